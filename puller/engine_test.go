package puller_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/pack"
	"github.com/cocoonstack/epoch-dedup/puller"
)

// spec is one file a test asks the engine to write.
type spec struct {
	name  string
	parts []part
	mode  os.FileMode
}

// TestFetch_Files writes several files that share chunks and have holes,
// from one pack or several, and checks bytes, holes, modes and that every
// distinct chunk was read once however often the files use it.
func TestFetch_Files(t *testing.T) {
	rnd := pages(1, 6, 4096, false)
	cmp := pages(2, 6, 4096, true)
	odd := [][]byte{page(3, 1, false), page(4, 5000, true), page(5, 70_000, false)}
	files := []spec{
		{"mem", []part{
			data(rnd[0]), zeros(1 << 20), data(cmp[0]), data(rnd[0]), data(rnd[1]), zeros(4 << 20),
			data(cmp[1]), data(odd[1]), zeros(8192), data(rnd[0]),
		}, 0o640},
		{"disk", []part{data(cmp[0]), data(rnd[0]), zeros(4 << 20), data(odd[0]), data(odd[2]), data(cmp[2])}, 0o444},
		{"holes-only", []part{zeros(3 << 20)}, 0o600},
		{"empty", nil, 0},
		{"dense", []part{data(rnd[2]), data(rnd[3]), data(cmp[3]), data(cmp[4]), data(rnd[4]), data(rnd[5]), data(cmp[5])}, 0o755},
	}
	var all, uniq [][]byte
	seen := map[chunk.ID]bool{}
	for _, f := range files {
		for _, c := range chunksOf(f.parts) {
			all = append(all, c)
			if !seen[chunk.Sum(c)] {
				seen[chunk.Sum(c)] = true
				uniq = append(uniq, c)
			}
		}
	}

	tests := []struct {
		name  string
		packs [][][]byte
		opts  []pack.Option
	}{
		{"one pack", [][][]byte{all}, nil},
		{"one block per chunk", [][][]byte{all}, []pack.Option{pack.WithBlockSize(4 << 10)}},
		{"three packs", [][][]byte{uniq[:5], uniq[5:10], uniq[10:]}, nil},
		// The index picks one copy; the other pack may be read for its
		// neighbours, so only "at least once" can be checked here.
		{"chunk in two packs", [][][]byte{all, all[:8]}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			for _, p := range tt.packs {
				e.addPack(p, tt.opts...)
			}
			var (
				fetch   []puller.File
				want    [][]byte
				raw     int64
				extents int64
			)
			distinct := map[chunk.ID]bool{}
			for _, f := range files {
				r, content := build(f.parts...)
				path := filepath.Join(e.dir, f.name)
				fetch = append(fetch, puller.File{Path: path, Recipe: r, Digest: digest(content), Mode: f.mode})
				want = append(want, content)
				raw += r.Size
				for _, c := range chunksOf(f.parts) {
					extents++
					distinct[chunk.Sum(c)] = true
				}
			}
			// A stale file at a target path must be replaced, not merged.
			if err := os.WriteFile(fetch[0].Path, bytes.Repeat([]byte{0xAA}, 9<<20), 0o600); err != nil {
				t.Fatal(err)
			}

			st, err := e.engine(nil).Fetch(context.Background(), fetch, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range files {
				mustEqualFile(t, fetch[i].Path, want[i])
				fi, err := os.Stat(fetch[i].Path)
				if err != nil {
					t.Fatal(err)
				}
				wantMode := f.mode
				if wantMode == 0 {
					wantMode = 0o600 // no mode given: the engine's private default stays
				}
				if fi.Mode().Perm() != wantMode {
					t.Errorf("%s: mode %v, want %v", f.name, fi.Mode().Perm(), wantMode)
				}
				checkHoles(t, fetch[i].Path, f.parts)
			}
			for id := range distinct {
				if n := e.reads(id); n != 1 && (len(e.where[id]) == 1 || n == 0) {
					t.Errorf("chunk %s read %d times, want 1", id, n)
				}
			}
			wantStats := puller.Stats{
				Files: int64(len(files)), RawBytes: raw, Chunks: extents,
				UniqueChunks: int64(len(distinct)), RemoteChunks: int64(len(distinct)),
				DownloadedBytes: st.DownloadedBytes, Requests: int64(len(e.store.requests())),
			}
			if st != wantStats {
				t.Errorf("stats %+v\nwant  %+v", st, wantStats)
			}
			var got int64
			for _, r := range e.store.requests() {
				got += r.length
			}
			if st.DownloadedBytes != got {
				t.Errorf("DownloadedBytes %d, store served %d", st.DownloadedBytes, got)
			}
		})
	}
}

// checkHoles fails when the zero extents of a file took disk space: the
// engine must leave them as holes, not write zeros.
func checkHoles(t *testing.T, path string, parts []part) {
	t.Helper()
	var dataBytes, zeroBytes int64
	for _, p := range parts {
		dataBytes += int64(len(p.data))
		zeroBytes += int64(p.zero)
	}
	got := allocated(t, path)
	if got < 0 || zeroBytes < 1<<20 {
		return // unknown, or too few zeros to tell from block rounding
	}
	// Each data extent may touch one extra block at either end.
	if limit := dataBytes + int64(len(parts))*2*4096 + 64<<10; got > limit {
		t.Errorf("%s: %d bytes allocated for %d data bytes and %d zero bytes: holes were written",
			filepath.Base(path), got, dataBytes, zeroBytes)
	}
}

func TestFetch_DigestMismatch(t *testing.T) {
	e := newEnv(t)
	p := pages(10, 4, 4096, true)
	e.addPack(p)
	good, goodContent := build(data(p[0]), zeros(8192), data(p[1]))
	bad, badContent := build(data(p[2]), data(p[3]))
	badContent[0] ^= 1 // the digest of other bytes
	files := []puller.File{
		{Path: filepath.Join(e.dir, "good"), Recipe: good, Digest: digest(goodContent), Mode: 0o644},
		{Path: filepath.Join(e.dir, "bad"), Recipe: bad, Digest: digest(badContent), Mode: 0o644},
	}
	st, err := e.engine(nil).Fetch(context.Background(), files, nil)
	if !errors.Is(err, puller.ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), files[1].Path) {
		t.Errorf("error %q does not name the file", err)
	}
	if st.Files != 1 {
		t.Errorf("Files = %d, want 1: only the file before the bad one is finished", st.Files)
	}
	// The bad file never gets its final mode: nothing about it says done.
	if fi, err := os.Stat(files[1].Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bad file: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

// TestFetch_LocalCopy checks that chunks a known local file holds are
// copied instead of downloaded, and only while the file is what the index
// recorded and its bytes still hash right.
func TestFetch_LocalCopy(t *testing.T) {
	l := pages(20, 3, 4096, true)  // chunks the local file holds
	r := pages(21, 2, 4096, false) // chunks only the store has
	_, local := build(data(l[0]), zeros(4096), data(l[1]), data(l[2]))
	localChunks := []index.LocalChunk{
		{ID: chunk.Sum(l[0]), Offset: 0, Length: 4096},
		{ID: chunk.Sum(l[1]), Offset: 8192, Length: 4096},
		{ID: chunk.Sum(l[2]), Offset: 12288, Length: 4096},
	}
	target := []part{data(r[0]), data(l[1]), zeros(1 << 16), data(l[0]), data(l[2]), data(r[1]), data(l[0])}
	const localTargetBytes = 4 * 4096 // l[0] twice, l[1], l[2]

	tests := []struct {
		name string
		// setup prepares local files; it returns options for the engine.
		setup              func(e *env) *puller.Options
		wantLocal          int64
		wantLocalPackReads bool
	}{
		{"valid", func(e *env) *puller.Options {
			e.addLocal("base", local, localChunks)
			return nil
		}, 3, false},
		{"touched after indexing", func(e *env) *puller.Options {
			path := e.addLocal("base", local, localChunks)
			fi, _ := os.Stat(path)
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime().Add(-1e9)); err != nil {
				e.tb.Fatal(err)
			}
			return nil
		}, 0, true},
		{"grown after indexing", func(e *env) *puller.Options {
			path := e.addLocal("base", local, localChunks)
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				e.tb.Fatal(err)
			}
			_, _ = f.Write([]byte("x"))
			_ = f.Close()
			return nil
		}, 0, true},
		{"removed", func(e *env) *puller.Options {
			_ = os.Remove(e.addLocal("base", local, localChunks))
			return nil
		}, 0, true},
		{"bytes changed, validator current", func(e *env) *puller.Options {
			// The index is right about the file's version but wrong about
			// one chunk (rewritten within the mtime granularity, say): only
			// that chunk is downloaded.
			changed := bytes.Clone(local)
			changed[8192+100] ^= 0xFF
			e.addLocal("base", changed, localChunks)
			return nil
		}, 2, true},
		{"stale first source, good second", func(e *env) *puller.Options {
			stale := e.addLocal("a-stale", local, localChunks)
			_ = os.WriteFile(stale, make([]byte, len(local)), 0o600)
			e.addLocal("b-good", local, localChunks)
			return nil
		}, 3, false},
		{"NoLocal", func(e *env) *puller.Options {
			e.addLocal("base", local, localChunks)
			return &puller.Options{NoLocal: true}
		}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			lp := e.addPack(l)
			rp := e.addPack(r)
			opts := tt.setup(e)
			recipe, content := build(target...)
			path := filepath.Join(e.dir, "out")
			st, err := e.engine(opts).Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, path, content)
			if st.LocalChunks != tt.wantLocal {
				t.Errorf("LocalChunks = %d, want %d", st.LocalChunks, tt.wantLocal)
			}
			if st.RemoteChunks != 5-tt.wantLocal {
				t.Errorf("RemoteChunks = %d, want %d", st.RemoteChunks, 5-tt.wantLocal)
			}
			if got := e.requestsTo(lp) > 0; got != tt.wantLocalPackReads {
				t.Errorf("pack of local chunks read: %v, want %v", got, tt.wantLocalPackReads)
			}
			if e.requestsTo(rp) == 0 {
				t.Error("pack of remote chunks not read")
			}
			if tt.wantLocal == 3 && st.ReusedBytes != localTargetBytes {
				t.Errorf("ReusedBytes = %d, want %d", st.ReusedBytes, localTargetBytes)
			}
		})
	}
}

// TestFetch_LocalOnly: a chunk the store index does not know is still
// written when a local file holds it; the store is never asked.
func TestFetch_LocalOnly(t *testing.T) {
	e := newEnv(t)
	p := pages(30, 2, 4096, true)
	_, local := build(data(p[0]), data(p[1]))
	e.addLocal("base", local, []index.LocalChunk{{ID: chunk.Sum(p[0]), Length: 4096}, {ID: chunk.Sum(p[1]), Offset: 4096, Length: 4096}})
	recipe, content := build(data(p[1]), zeros(4096), data(p[0]))
	path := filepath.Join(e.dir, "out")
	st, err := e.engine(nil).Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, path, content)
	if st.LocalChunks != 2 || st.Requests != 0 || len(e.store.requests()) != 0 {
		t.Errorf("stats %+v, %d store requests; want 2 local chunks and no request", st, len(e.store.requests()))
	}
}

// TestFetch_Record checks that a fetched file's chunks are recorded under
// File.Record, each at its first offset, with the validator of the file
// as written (a rename keeps it), and that nothing is recorded for a file
// that fails its digest.
func TestFetch_Record(t *testing.T) {
	e := newEnv(t)
	p := pages(35, 3, 4096, true)
	e.addPack(p)
	recipe, content := build(data(p[0]), zeros(8192), data(p[1]), data(p[2]), data(p[0]))
	path := filepath.Join(e.dir, "staged")
	final := filepath.Join(e.dir, "final")
	files := []puller.File{{Path: path, Recipe: recipe, Digest: digest(content), Record: final}}
	if _, err := e.engine(nil).Fetch(context.Background(), files, nil); err != nil {
		t.Fatal(err)
	}
	if files[0].Recipe != recipe {
		t.Error("Fetch changed the caller's files")
	}
	if err := os.Rename(path, final); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{0, 12288, 16384} {
		refs, err := e.idx.FindLocal(chunk.Sum(p[i]))
		if err != nil || len(refs) != 1 || refs[0].Path != final || refs[0].Offset != want || refs[0].Validator != index.ValidatorFor(fi) {
			t.Errorf("chunk %d: FindLocal = %+v, %v; want %s at %d with the renamed file's validator", i, refs, err, final, want)
		}
	}

	other := pages(36, 1, 4096, true)
	e.addPack(other)
	bad, _ := build(data(other[0]))
	files = []puller.File{{Path: filepath.Join(e.dir, "bad"), Recipe: bad, Digest: digest(content), Record: filepath.Join(e.dir, "bad-final")}}
	if _, err := e.engine(nil).Fetch(context.Background(), files, nil); !errors.Is(err, puller.ErrDigestMismatch) {
		t.Fatalf("wrong digest: %v", err)
	}
	if refs, _ := e.idx.FindLocal(chunk.Sum(other[0])); len(refs) != 0 {
		t.Errorf("a file that failed its digest was recorded: %+v", refs)
	}
}

// TestFetch_Resume checks that a resumed file keeps the chunks already in
// place, rewrites the wrong ones and ends byte-identical.
func TestFetch_Resume(t *testing.T) {
	p := pages(40, 8, 4096, true)
	parts := []part{
		data(p[0]), data(p[1]), zeros(1 << 20), data(p[2]), data(p[3]), data(p[0]),
		data(p[4]), zeros(8192), data(p[5]), data(p[6]), data(p[7]),
	}
	recipe, content := build(parts...)
	offsets := map[int]int64{} // part index -> file offset
	var off int64
	for i, pt := range parts {
		offsets[i] = off
		off += int64(len(pt.data)) + int64(pt.zero)
	}

	tests := []struct {
		name string
		// existing returns what the file holds before the resumed fetch.
		existing    func() []byte
		wantResumed int64
		wantRemote  int64
		sparse      bool // write existing with its zero pages as holes
	}{
		{"no file", func() []byte { return nil }, 0, 8, false},
		{"complete", func() []byte { return bytes.Clone(content) }, 9, 0, false},
		{"first half written", func() []byte {
			b := make([]byte, offsets[5])
			copy(b, content)
			return b
		}, 4, 5, false}, // p0,p1,p2,p3 in place; p0 (again),p4..p7 missing: p0 is needed once more
		{"some chunks wrong", func() []byte {
			b := bytes.Clone(content)
			b[offsets[1]] ^= 1
			b[offsets[9]+4095] ^= 1
			return b
		}, 7, 2, false},
		{"longer than the recipe", func() []byte {
			return append(bytes.Clone(content), bytes.Repeat([]byte{7}, 10000)...)
		}, 9, 0, false},
		{"garbage in a hole", func() []byte {
			// Bytes where the recipe has zeros must not survive: the digest
			// check would not see them if holes were assumed, not checked.
			b := bytes.Clone(content)
			copy(b[offsets[2]+5000:], "left over from something else")
			copy(b[offsets[7]:], "and here")
			return b
		}, 9, 0, false},
		{"garbage in a hole, sparse file", func() []byte {
			// Data regions that straddle data and zero extents, and holes
			// around them that must not be read.
			b := bytes.Clone(content)
			copy(b[offsets[2]+(1<<19):], "stale")
			copy(b[offsets[7]+8191:], "x")
			return b
		}, 9, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.addPack(p)
			path := filepath.Join(e.dir, "out")
			switch b := tt.existing(); {
			case b != nil && tt.sparse:
				writeSparse(t, path, b)
			case b != nil:
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			file := puller.File{Path: path, Recipe: recipe, Digest: digest(content), Resume: true}
			st, err := e.engine(nil).Fetch(context.Background(), []puller.File{file}, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, path, content)
			if st.ResumedChunks != tt.wantResumed || st.RemoteChunks != tt.wantRemote {
				t.Errorf("resumed %d, remote %d; want %d, %d", st.ResumedChunks, st.RemoteChunks, tt.wantResumed, tt.wantRemote)
			}
			if st.ReusedBytes != st.ResumedChunks*4096 {
				t.Errorf("ReusedBytes %d, want %d", st.ReusedBytes, st.ResumedChunks*4096)
			}
			if tt.wantRemote == 0 && len(e.store.requests()) != 0 {
				t.Errorf("%d store requests for a file already complete", len(e.store.requests()))
			}
		})
	}
}

// TestFetch_Faults puts a fault between the engine and real packs. Every
// fault must end in an error, never in a file reported finished, and bytes
// that failed verification must never reach the file.
func TestFetch_Faults(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name         string
		compressible bool
		// fault wraps the real reader; victim is the chunk it damages.
		fault   func(real puller.PackReader, victim located) puller.PackReader
		check   func(t *testing.T, err error, victim located)
		missing bool // the recipe names a chunk no pack holds
	}{
		{"flipped byte in raw block", false, corruptAt, wantCorrupt, false},
		{"flipped byte in zstd block", true, corruptAt, wantCorrupt, false},
		{"truncated body", true, func(real puller.PackReader, _ located) puller.PackReader {
			return readerFunc(func(ctx context.Context, p chunk.ID, off, n int64) (io.ReadCloser, error) {
				rc, err := real.ReadPack(ctx, p, off, n)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{io.LimitReader(rc, n-1), rc}, nil
			})
		}, func(t *testing.T, err error, v located) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), v.pack.String()) {
				t.Errorf("err = %v, want io.ErrUnexpectedEOF naming pack %s", err, v.pack)
			}
		}, false},
		{"ReadPack error", false, func(puller.PackReader, located) puller.PackReader {
			return readerFunc(func(context.Context, chunk.ID, int64, int64) (io.ReadCloser, error) { return nil, errBoom })
		}, func(t *testing.T, err error, v located) {
			if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), v.pack.String()) {
				t.Errorf("err = %v, want boom naming pack %s", err, v.pack)
			}
		}, false},
		{"body read error", false, func(real puller.PackReader, _ located) puller.PackReader {
			return readerFunc(func(ctx context.Context, p chunk.ID, off, n int64) (io.ReadCloser, error) {
				rc, err := real.ReadPack(ctx, p, off, n)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{io.MultiReader(io.LimitReader(rc, n/2), iotestErr(errBoom)), rc}, nil
			})
		}, func(t *testing.T, err error, _ located) {
			if !errors.Is(err, errBoom) {
				t.Errorf("err = %v, want boom", err)
			}
		}, false},
		{
			"chunk missing from index", false, func(real puller.PackReader, _ located) puller.PackReader { return real },
			func(t *testing.T, err error, _ located) {
				if !errors.Is(err, puller.ErrChunkMissing) {
					t.Errorf("err = %v, want ErrChunkMissing", err)
				}
			}, true,
		},
	}
	for _, tt := range tests {
		for _, conc := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", tt.name, conc), func(t *testing.T) {
				e := newEnv(t)
				// Small blocks and runs: many requests, so the fault hits
				// one of several concurrent workers.
				p := pages(50, 64, 4096, tt.compressible)
				e.addPack(p, pack.WithBlockSize(16<<10))
				parts := append([]part{zeros(4096)}, dataParts(p)...)
				var absent []byte
				if tt.missing {
					absent = page(51, 4096, false)
					parts = append(parts, data(absent))
				}
				recipe, content := build(parts...)
				victim := e.loc(chunk.Sum(p[37]))
				store := e.store
				engine := puller.New(e.idx.DB, tt.fault(store, victim), &puller.Options{Concurrency: conc, MaxRunBytes: 32 << 10})
				path := filepath.Join(e.dir, "out")
				st, err := engine.Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content), Mode: 0o644}}, nil)
				if err == nil {
					t.Fatal("Fetch succeeded")
				}
				tt.check(t, err, victim)
				if st.Files != 0 {
					t.Errorf("Files = %d after a failed fetch", st.Files)
				}
				if tt.missing && len(store.requests()) != 0 {
					t.Errorf("%d requests although a chunk is missing: nothing should be read", len(store.requests()))
				}
				got, _ := os.ReadFile(path)
				if bytes.Equal(got, content) {
					t.Error("file is complete although the fetch failed")
				}
				mustBeVerifiedOrHole(t, got, parts)
			})
		}
	}
}

// mustBeVerifiedOrHole fails when a data extent of a file left by a failed
// fetch holds anything but its chunk or zeros: unverified bytes must never
// reach the file, even a file the caller will throw away.
func mustBeVerifiedOrHole(t *testing.T, got []byte, parts []part) {
	t.Helper()
	var off int
	for i, p := range parts {
		n := len(p.data) + int(p.zero)
		if off+n > len(got) {
			t.Fatalf("file of %d bytes ends inside part %d", len(got), i)
		}
		if region := got[off : off+n]; !chunk.IsZero(region) && !bytes.Equal(region, p.data) {
			t.Errorf("part %d at %d holds bytes that are neither its chunk nor a hole", i, off)
		}
		off += n
	}
}

// corruptAt flips one byte in the middle of victim's block in whatever the
// real store returns.
func corruptAt(real puller.PackReader, victim located) puller.PackReader {
	at := int64(victim.entry.BlockOffset) + int64(victim.entry.BlockLength)/2
	return readerFunc(func(ctx context.Context, p chunk.ID, off, n int64) (io.ReadCloser, error) {
		rc, err := real.ReadPack(ctx, p, off, n)
		if err != nil || p != victim.pack || at < off || at >= off+n {
			return rc, err
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return nil, err
		}
		b[at-off] ^= 0x40
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

func wantCorrupt(t *testing.T, err error, victim located) {
	t.Helper()
	var cce *pack.CorruptChunkError
	if !errors.As(err, &cce) || !errors.Is(err, pack.ErrCorrupt) {
		t.Fatalf("err = %v, want a *pack.CorruptChunkError wrapping pack.ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), victim.pack.String()) {
		t.Errorf("error %q does not name pack %s", err, victim.pack)
	}
	// Raw blocks fail on the chunk holding the flipped byte; a zstd block
	// fails as a whole, on its first chunk.
	if e := cce.ID; !strings.Contains(err.Error(), e.String()) {
		t.Errorf("error %q does not name chunk %s", err, e)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func iotestErr(err error) io.Reader { return errReader{err} }

// TestFetch_RunPlanning counts requests: MaxGap decides whether blocks a
// few unneeded bytes apart share a read, MaxRunBytes caps a read and a
// block is never split.
func TestFetch_RunPlanning(t *testing.T) {
	const block = 1 + 4096 // type byte and a random (stored raw) page
	p := pages(60, 64, 4096, false)
	every := func(step int) []part {
		var out []part
		for i := 0; i < len(p); i += step {
			out = append(out, data(p[i]))
		}
		return out
	}
	tests := []struct {
		name      string
		parts     []part
		opts      puller.Options
		wantReqs  int
		wantBytes int64
	}{
		{"defaults", every(1), puller.Options{}, 1, 64 * block},
		{"MaxRunBytes splits", every(1), puller.Options{MaxRunBytes: 16 << 10}, 22, 64 * block}, // 3 blocks per read
		{"block larger than MaxRunBytes", every(1), puller.Options{MaxRunBytes: 100}, 64, 64 * block},
		{"gap above MaxGap", every(2), puller.Options{MaxGap: block - 1}, 32, 32 * block},
		{"gap within MaxGap", every(2), puller.Options{MaxGap: block}, 1, 63 * block},
		{"gap within MaxGap, split", every(2), puller.Options{MaxGap: block, MaxRunBytes: 3 * block}, 16, 16 * 3 * block},
		{"sparse picks", []part{data(p[3]), data(p[4]), data(p[40]), data(p[5])}, puller.Options{MaxGap: block}, 2, 4 * block},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.addPack(p, pack.WithBlockSize(4<<10))
			for _, c := range p {
				if l := e.loc(chunk.Sum(c)).entry; l.BlockLength != block {
					t.Fatalf("block of %d bytes, want %d: the counts below assume one raw page per block", l.BlockLength, block)
				}
			}
			recipe, content := build(tt.parts...)
			path := filepath.Join(e.dir, "out")
			st, err := e.engine(&tt.opts).Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, path, content)
			reqs := e.store.requests()
			if len(reqs) != tt.wantReqs || st.Requests != int64(tt.wantReqs) || st.DownloadedBytes != tt.wantBytes {
				t.Errorf("%d requests (stats %d), %d bytes; want %d requests, %d bytes", len(reqs), st.Requests, st.DownloadedBytes, tt.wantReqs, tt.wantBytes)
			}
			limit := tt.opts.MaxRunBytes
			if limit == 0 {
				limit = puller.DefaultMaxRunBytes
			}
			for _, r := range reqs {
				if r.length > max(limit, block) {
					t.Errorf("read of %d bytes, limit %d", r.length, limit)
				}
			}
		})
	}
}

// TestFetch_Concurrency: the number of workers changes nothing in the
// result, and progress reports are consistent while they run (go test -race).
func TestFetch_Concurrency(t *testing.T) {
	e := newEnv(t)
	var (
		all   [][]byte
		specs [][]part
	)
	for i := range 3 {
		all = append(all, pages(uint64(70+i), 200, 4096, i%2 == 0)...)
	}
	// Odd sizes too, so blocks hold chunks that straddle pages.
	for i := range 40 {
		all = append(all, page(uint64(80+i), 1+i*997, true))
	}
	e.addPack(all[:250])
	e.addPack(all[250:500], pack.WithBlockSize(16<<10))
	e.addPack(all[500:])
	for f := range 4 {
		var parts []part
		for i := range 300 {
			if (i*7+f*13)%11 == 0 {
				parts = append(parts, zeros(uint64(4096*(1+i%5))))
			} else {
				parts = append(parts, data(all[(i*31+f*101)%len(all)]))
			}
		}
		specs = append(specs, parts)
	}

	var first []puller.Stats
	for _, conc := range []int{1, 2, 8} {
		dir := t.TempDir()
		var files []puller.File
		var want [][]byte
		for i, parts := range specs {
			r, content := build(parts...)
			files = append(files, puller.File{Path: filepath.Join(dir, string(rune('a'+i))), Recipe: r, Digest: digest(content)})
			want = append(want, content)
		}
		var (
			mu      sync.Mutex
			reports []puller.Stats
		)
		progress := func(s puller.Stats) {
			mu.Lock()
			reports = append(reports, s)
			mu.Unlock()
		}
		e.store.reset()
		st, err := e.engine(&puller.Options{Concurrency: conc, MaxRunBytes: 64 << 10}).Fetch(context.Background(), files, progress)
		if err != nil {
			t.Fatalf("concurrency %d: %v", conc, err)
		}
		for i := range files {
			mustEqualFile(t, files[i].Path, want[i])
		}
		if st.Requests < 10 {
			t.Fatalf("only %d requests: the test needs many runs to race", st.Requests)
		}
		if len(reports) == 0 || reports[len(reports)-1] != st {
			t.Errorf("concurrency %d: last progress report differs from the result", conc)
		}
		for i := 1; i < len(reports); i++ {
			if reports[i].DownloadedBytes < reports[i-1].DownloadedBytes || reports[i].Requests < reports[i-1].Requests {
				t.Errorf("concurrency %d: progress went backwards: %+v then %+v", conc, reports[i-1], reports[i])
				break
			}
		}
		first = append(first, st)
	}
	for i := 1; i < len(first); i++ {
		if first[i] != first[0] {
			t.Errorf("stats differ with concurrency:\n%+v\n%+v", first[0], first[i])
		}
	}
}

func TestFetch_Canceled(t *testing.T) {
	e := newEnv(t)
	p := pages(90, 32, 4096, false)
	e.addPack(p, pack.WithBlockSize(4<<10))
	recipe, content := build(dataParts(p)...)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel as the first read is sent: the rest must not be requested.
	var calls int
	var mu sync.Mutex
	reader := readerFunc(func(c context.Context, id chunk.ID, off, n int64) (io.ReadCloser, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		cancel()
		return e.store.ReadPack(context.WithoutCancel(c), id, off, n)
	})
	engine := puller.New(e.idx.DB, reader, &puller.Options{Concurrency: 1, MaxRunBytes: 4097})
	_, err := engine.Fetch(ctx, []puller.File{{Path: filepath.Join(e.dir, "out"), Recipe: recipe, Digest: digest(content)}}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("%d reads after cancel, want 1", calls)
	}
}

func TestFetch_BadInput(t *testing.T) {
	e := newEnv(t)
	c := page(95, 4096, true)
	recipe, _ := build(data(c))
	tests := []struct {
		name   string
		engine *puller.Engine
		file   puller.File
		want   error
	}{
		{"no recipe", e.engine(nil), puller.File{Path: filepath.Join(e.dir, "a")}, nil},
		{"no index", puller.New(nil, e.store, nil), puller.File{Path: filepath.Join(e.dir, "b"), Recipe: recipe}, puller.ErrChunkMissing},
		{"unwritable path", e.engine(nil), puller.File{Path: filepath.Join(e.dir, "missing", "c"), Recipe: recipe}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.engine.Fetch(context.Background(), []puller.File{tt.file}, nil)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A recipe claiming far more data than the disk holds (8 TiB) is
	// refused before any file is created.
	huge := &manifest.Recipe{}
	for range 1 << 11 {
		huge.AppendData(chunk.Sum(c), math.MaxUint32)
	}
	hugePath := filepath.Join(e.dir, "huge")
	if _, err := e.engine(nil).Fetch(context.Background(), []puller.File{{Path: hugePath, Recipe: huge}}, nil); !errors.Is(err, puller.ErrNoSpace) {
		t.Fatalf("8 TiB recipe: err = %v, want ErrNoSpace", err)
	} else if !strings.Contains(err.Error(), "free") {
		t.Errorf("error %q does not say how much is free", err)
	}
	// So is a file over MaxFileSize, even of holes only (which XFS and
	// btrfs would create, and whose digest would take days).
	hugeHoles := &manifest.Recipe{}
	hugeHoles.AppendZero(1 << 49)
	if _, err := e.engine(nil).Fetch(context.Background(), []puller.File{{Path: hugePath, Recipe: hugeHoles}}, nil); !errors.Is(err, puller.ErrFileTooLarge) {
		t.Fatalf("512 TiB of holes: err = %v, want ErrFileTooLarge", err)
	}
	if _, err := os.Stat(hugePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused fetch left %s: %v", hugePath, err)
	}
	// A recipe of holes needs neither index nor store.
	holes := &manifest.Recipe{}
	holes.AppendZero(1 << 20)
	if _, err := puller.New(nil, nil, nil).Fetch(context.Background(), []puller.File{{Path: filepath.Join(e.dir, "d"), Recipe: holes, Digest: digest(make([]byte, 1<<20))}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFetch_CutBodyResumed: a body that breaks part-way is read again from
// the first block not yet written, and the fetch completes.
func TestFetch_CutBodyResumed(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency=%d", conc), func(t *testing.T) {
			e := newEnv(t)
			p := pages(60, 64, 4096, true)
			e.addPack(p, pack.WithBlockSize(16<<10))
			recipe, content := build(dataParts(p)...)
			var mu sync.Mutex
			type read struct {
				pack   chunk.ID
				off, n int64
			}
			var reads []read
			cutOnce := readerFunc(func(ctx context.Context, pk chunk.ID, off, n int64) (io.ReadCloser, error) {
				rc, err := e.store.ReadPack(ctx, pk, off, n)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				first := true
				for _, r := range reads {
					if r.pack == pk && off > r.off && off < r.off+r.n {
						first = false // a resumed read: let it through
					}
				}
				reads = append(reads, read{pk, off, n})
				mu.Unlock()
				if !first {
					return rc, nil
				}
				errCut := errors.New("connection reset")
				return struct {
					io.Reader
					io.Closer
				}{io.MultiReader(io.LimitReader(rc, n/2), iotestErr(errCut)), rc}, nil
			})
			engine := puller.New(e.idx.DB, cutOnce, &puller.Options{Concurrency: conc, MaxRunBytes: 64 << 10})
			path := filepath.Join(e.dir, "out")
			st, err := engine.Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
				t.Fatal("file differs")
			}
			resumed := 0
			for _, r := range reads {
				for _, q := range reads {
					if q.pack == r.pack && r.off > q.off && r.off < q.off+q.n {
						resumed++
						break
					}
				}
			}
			if resumed == 0 || int(st.Requests) != len(reads) {
				t.Fatalf("%d reads, %d resumed mid-run, Requests = %d: want resumed reads counted", len(reads), resumed, st.Requests)
			}
		})
	}
}

// TestFetch_LocalCopyParallel copies enough local chunks for several
// copiers, with bad local copies in each copier's part and a chunk written
// at both ends of the file: every bad chunk is downloaded, every place of
// it written, the rest copied.
func TestFetch_LocalCopyParallel(t *testing.T) {
	const n = 10000
	l := pages(30, n, 256, false)
	parts, local, localChunks := localFile(l)
	bad := []int{0, 17, n / 2, n/2 + 1, n - 3}
	corrupt := bytes.Clone(local)
	for _, i := range bad {
		corrupt[i*256+9] ^= 0xFF
	}

	e := newEnv(t)
	e.addPack(l)
	e.addLocal("base", corrupt, localChunks)
	recipe, content := build(append(parts, data(l[0]), data(l[n/2]))...)
	path := filepath.Join(e.dir, "out")
	st, err := e.engine(&puller.Options{Concurrency: 4}).Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, path, content)
	if st.LocalChunks != n-int64(len(bad)) || st.RemoteChunks != int64(len(bad)) {
		t.Errorf("LocalChunks = %d, RemoteChunks = %d, want %d and %d", st.LocalChunks, st.RemoteChunks, n-len(bad), len(bad))
	}
}

// TestFetch_LocalClone checks that local runs are cloned, not written, on
// a filesystem that can (XFS with reflink, btrfs; run it with TMPDIR on
// one), and that the file is right. Elsewhere the same fetch copies, and
// the test says so and skips. (A run holding a page that fails its hash is
// written chunk by chunk: TestFetch_LocalCopyParallel.)
func TestFetch_LocalClone(t *testing.T) {
	const n = 512
	parts, local, localChunks := localFile(pages(31, n, 4096, false))
	e := newEnv(t)
	e.addLocal("base", local, localChunks)
	// The second half first, after a hole: runs land at other offsets
	// than their source's.
	recipe, content := build(append(append(append([]part(nil), parts[n/2:]...), zeros(8192)), parts[:n/2]...)...)
	path := filepath.Join(e.dir, "out")
	st, err := e.engine(nil).Fetch(context.Background(), []puller.File{{Path: path, Recipe: recipe, Digest: digest(content)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, path, content)
	if st.LocalChunks != n || st.ReusedBytes != n*4096 {
		t.Errorf("LocalChunks = %d, ReusedBytes = %d, want %d and %d", st.LocalChunks, st.ReusedBytes, n, n*4096)
	}
	if st.ClonedBytes == 0 {
		t.Skipf("%s cannot clone ranges (ext4, tmpfs): the local pages were copied", e.dir)
	}
	if st.ClonedBytes != st.ReusedBytes {
		t.Errorf("cloned %d of %d reused bytes", st.ClonedBytes, st.ReusedBytes)
	}
}
