package puller_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/pack"
	"github.com/cocoonstack/epoch-dedup/puller"
)

const (
	benchSize      = 64 << 20
	benchPageCount = benchSize / chunk.PageSize
	benchPackPages = 2048 // 8 MiB of raw pages per pack
)

// benchMemory lays out a 64 MiB memory snapshot of 4 KiB pages: half of
// them zero (holes), scattered in runs of random length; of the data pages
// half random, half compressible. It returns the recipe, the file's bytes
// and the data pages with their offsets.
func benchMemory() (*manifest.Recipe, []byte, []index.LocalChunk, [][]byte) {
	rng := rand.New(rand.NewPCG(7, 7))
	isZero := make([]bool, benchPageCount)
	for _, i := range rng.Perm(benchPageCount)[:benchPageCount/2] {
		isZero[i] = true
	}
	var (
		parts  []part
		local  []index.LocalChunk
		pieces [][]byte
	)
	for i := range benchPageCount {
		if isZero[i] {
			parts = append(parts, zeros(chunk.PageSize))
			continue
		}
		p := page(uint64(i), chunk.PageSize, len(pieces)%2 == 1)
		parts = append(parts, data(p))
		pieces = append(pieces, p)
		local = append(local, index.LocalChunk{ID: chunk.Sum(p), Offset: int64(i) * chunk.PageSize, Length: chunk.PageSize})
	}
	recipe, content := build(parts...)
	return recipe, content, local, pieces
}

// benchEnv stores the data pages in 8 MiB packs, as a push would.
func benchEnv(b *testing.B, pieces [][]byte) *env {
	e := newEnv(b)
	enc, err := pack.NewEncoder(pack.DefaultLevel)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = enc.Close() }()
	for i := 0; i < len(pieces); i += benchPackPages {
		e.addPack(pieces[i:min(i+benchPackPages, len(pieces))], pack.WithEncoder(enc))
	}
	return e
}

// BenchmarkEngine_Fetch pulls the whole file from in-memory packs: decode,
// BLAKE3 per chunk, writes, the SHA-256 of the file and fsync. The store
// costs nothing here, so this is the engine's own ceiling.
func BenchmarkEngine_Fetch(b *testing.B) {
	recipe, content, _, pieces := benchMemory()
	e := benchEnv(b, pieces)
	files := []puller.File{{Path: filepath.Join(e.dir, "mem"), Recipe: recipe, Digest: digest(content), Mode: 0o600}}
	eng := e.engine(nil)
	var st puller.Stats
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if st, err = eng.Fetch(context.Background(), files, nil); err != nil {
			b.Fatal(err)
		}
	}
	if st.RemoteChunks != int64(len(pieces)) || st.LocalChunks != 0 {
		b.Fatalf("stats %+v: want every chunk remote", st)
	}
	b.ReportMetric(float64(st.Requests), "requests/op")
	b.ReportMetric(float64(st.DownloadedBytes)/(1<<20), "MiB-read/op")
}

// BenchmarkEngine_FetchLocal pulls the same file when an indexed local copy
// holds every chunk: stat check, read, BLAKE3, write. No request is sent.
func BenchmarkEngine_FetchLocal(b *testing.B) {
	recipe, content, local, pieces := benchMemory()
	e := benchEnv(b, pieces)
	e.addLocal("base", content, local)
	files := []puller.File{{Path: filepath.Join(e.dir, "mem"), Recipe: recipe, Digest: digest(content), Mode: 0o600}}
	eng := e.engine(nil)
	var st puller.Stats
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if st, err = eng.Fetch(context.Background(), files, nil); err != nil {
			b.Fatal(err)
		}
	}
	if st.LocalChunks != int64(len(pieces)) || st.Requests != 0 {
		b.Fatalf("stats %+v: want every chunk local, no request", st)
	}
}
