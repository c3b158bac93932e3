package puller_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/index/indextest"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/pack"
	"github.com/cocoonstack/epoch-dedup/puller"
)

// request is one ReadPack call the store answered.
type request struct {
	pack        chunk.ID
	off, length int64
}

// memStore holds real packs in memory and records every ranged read, so
// tests can say which bytes the engine asked for and how often.
type memStore struct {
	mu    sync.Mutex
	packs map[chunk.ID][]byte
	reqs  []request
}

func (s *memStore) ReadPack(ctx context.Context, p chunk.ID, off, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.packs[p]
	if !ok {
		return nil, fmt.Errorf("pack %s: %w", p, fs.ErrNotExist)
	}
	if off < 0 || length <= 0 || off > int64(len(data))-length {
		return nil, fmt.Errorf("pack %s: range [%d,+%d) outside %d bytes", p, off, length, len(data))
	}
	s.reqs = append(s.reqs, request{p, off, length})
	return io.NopCloser(bytes.NewReader(data[off : off+length])), nil
}

func (s *memStore) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

func (s *memStore) reset() {
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
}

// readerFunc lets a test put a fault in front of the real store.
type readerFunc func(ctx context.Context, p chunk.ID, off, length int64) (io.ReadCloser, error)

func (f readerFunc) ReadPack(ctx context.Context, p chunk.ID, off, length int64) (io.ReadCloser, error) {
	return f(ctx, p, off, length)
}

// located is where the store keeps a chunk.
type located struct {
	pack  chunk.ID
	entry pack.Entry
}

// env is one test's world: a real bbolt index, real packs and a directory.
type env struct {
	tb    testing.TB
	idx   *indextest.DB
	store *memStore
	dir   string
	where map[chunk.ID][]located // every pack holding a chunk
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	return &env{
		tb:    tb,
		idx:   indextest.MustOpen(tb, "", &index.Options{NoSync: true}),
		store: &memStore{packs: map[chunk.ID][]byte{}},
		dir:   tb.TempDir(),
		where: map[chunk.ID][]located{},
	}
}

// addPack writes chunks (deduplicated, as a pusher would) into one real pack,
// stores it under its id and records it in the index.
func (e *env) addPack(chunks [][]byte, opts ...pack.Option) chunk.ID {
	e.tb.Helper()
	w, err := pack.NewWriter(opts...)
	if err != nil {
		e.tb.Fatal(err)
	}
	seen := map[chunk.ID]bool{}
	for _, c := range chunks {
		id := chunk.Sum(c)
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := w.Add(id, c); err != nil {
			e.tb.Fatal(err)
		}
	}
	data, entries, err := w.Finish()
	if err != nil {
		e.tb.Fatal(err)
	}
	id := w.ID()
	pe := make([]index.PackEntry, len(entries))
	for i, en := range entries {
		pe[i] = index.PackEntry(en)
		e.where[en.ID] = append(e.where[en.ID], located{id, en})
	}
	if err := e.idx.AddPack(id, int64(len(data)), pe); err != nil {
		e.tb.Fatal(err)
	}
	e.store.mu.Lock()
	e.store.packs[id] = data
	e.store.mu.Unlock()
	return id
}

// addLocal writes content to a file (leaving zero pages as holes) and
// records the given chunks of it in the index with the file's validator.
func (e *env) addLocal(name string, content []byte, chunks []index.LocalChunk) string {
	e.tb.Helper()
	path := filepath.Join(e.dir, name)
	writeSparse(e.tb, path, content)
	fi, err := os.Stat(path)
	if err != nil {
		e.tb.Fatal(err)
	}
	if err := e.idx.AddLocalFile(path, index.ValidatorFor(fi), slices.Values(chunks)); err != nil {
		e.tb.Fatal(err)
	}
	return path
}

func (e *env) engine(opts *puller.Options) *puller.Engine {
	return puller.New(e.idx.DB, e.store, opts)
}

// requestsTo counts the reads of pack p.
func (e *env) requestsTo(p chunk.ID) int {
	n := 0
	for _, r := range e.store.requests() {
		if r.pack == p {
			n++
		}
	}
	return n
}

// loc returns where the first pack holding id keeps it.
func (e *env) loc(id chunk.ID) located {
	e.tb.Helper()
	locs := e.where[id]
	if len(locs) == 0 {
		e.tb.Fatalf("chunk %s is in no pack", id)
	}
	return locs[0]
}

// reads counts the requests whose range covers id's block in any pack
// holding it: a chunk read once is covered exactly once.
func (e *env) reads(id chunk.ID) int {
	n := 0
	for _, loc := range e.where[id] {
		for _, r := range e.store.requests() {
			if r.pack == loc.pack && uint64(r.off) <= loc.entry.BlockOffset && loc.entry.BlockEnd() <= uint64(r.off+r.length) {
				n++
			}
		}
	}
	return n
}

// part is a piece of a test file: data (one chunk) or a run of zeros.
type part struct {
	data []byte
	zero uint64
}

func data(b []byte) part  { return part{data: b} }
func zeros(n uint64) part { return part{zero: n} }

// dataParts returns one data part per chunk, in order.
func dataParts(chunks [][]byte) []part {
	parts := make([]part, len(chunks))
	for i, c := range chunks {
		parts[i] = data(c)
	}
	return parts
}

// localFile lays chunks out back to back as a local file would hold
// them: their parts for a recipe, the file's bytes, and the index
// records of where each chunk lies in it.
func localFile(chunks [][]byte) (parts []part, content []byte, recs []index.LocalChunk) {
	parts = dataParts(chunks)
	var off int64
	for _, c := range chunks {
		recs = append(recs, index.LocalChunk{ID: chunk.Sum(c), Offset: off, Length: uint32(len(c))})
		off += int64(len(c))
	}
	_, content = build(parts...)
	return parts, content, recs
}

// build returns the recipe of parts and the bytes it stands for.
func build(parts ...part) (*manifest.Recipe, []byte) {
	r := &manifest.Recipe{}
	var content []byte
	for _, p := range parts {
		if p.data != nil {
			r.AppendData(chunk.Sum(p.data), uint32(len(p.data)))
			content = append(content, p.data...)
		} else {
			r.AppendZero(p.zero)
			content = append(content, make([]byte, p.zero)...)
		}
	}
	return r, content
}

// chunksOf lists the data chunks of parts (repeats included).
func chunksOf(parts []part) [][]byte {
	var out [][]byte
	for _, p := range parts {
		if p.data != nil {
			out = append(out, p.data)
		}
	}
	return out
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// page returns n pseudo-random bytes for seed; compressible pages repeat a
// pattern in their second half, as guest memory often does.
func page(seed uint64, n int, compressible bool) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	limit := n
	if compressible {
		limit = n / 2
	}
	for i := range limit {
		b[i] = byte(rng.Uint32())
	}
	for i := limit; i < n; i++ {
		b[i] = byte(i % 7)
	}
	return b
}

func pages(seed uint64, count, size int, compressible bool) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		out[i] = page(seed*1_000_003+uint64(i), size, compressible)
	}
	return out
}

// writeSparse writes content to path, skipping all-zero 4 KiB pages so they
// stay holes, like a snapshot file on disk.
func writeSparse(tb testing.TB, path string, content []byte) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := f.Truncate(int64(len(content))); err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(content); off += chunk.PageSize {
		p := content[off:min(off+chunk.PageSize, len(content))]
		if chunk.IsZero(p) {
			continue
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			tb.Fatal(err)
		}
	}
}

// mustEqualFile fails unless path holds exactly want.
func mustEqualFile(tb testing.TB, path string, want []byte) {
	tb.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		tb.Fatalf("%s: %d bytes, want %d", filepath.Base(path), len(got), len(want))
	}
	i := 0
	for got[i] == want[i] {
		i++
	}
	tb.Fatalf("%s: first difference at byte %d of %d", filepath.Base(path), i, len(want))
}
