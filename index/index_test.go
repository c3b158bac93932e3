package index_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/index/indextest"
)

func randID(rng *rand.Rand) chunk.ID {
	var id chunk.ID
	for i := range id {
		id[i] = byte(rng.UintN(256))
	}
	return id
}

// randPack returns a pack of n chunks in blocks of 16 chunks of 4 KiB.
func randPack(rng *rand.Rand, n int) index.PackRecord {
	p := index.PackRecord{Pack: randID(rng)}
	for i := range n {
		block := uint64(i/16) * 20000
		p.Entries = append(p.Entries, index.PackEntry{
			ID: randID(rng), BlockOffset: block, BlockLength: 20000,
			Offset: uint32(i%16) * 4096, Length: 4096,
		})
	}
	p.Size = int64(n/16+1) * 20000
	return p
}

func addPack(t testing.TB, db *indextest.DB, p index.PackRecord) {
	t.Helper()
	if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
		t.Fatal(err)
	}
}

func wantLocation(t *testing.T, db *indextest.DB, p index.PackRecord, e index.PackEntry) {
	t.Helper()
	loc, ok, err := db.Lookup(e.ID)
	if err != nil || !ok {
		t.Fatalf("lookup %s: ok=%v err=%v", e.ID, ok, err)
	}
	want := index.Location{Pack: p.Pack, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length}
	if loc != want {
		t.Fatalf("lookup %s = %+v, want %+v", e.ID, loc, want)
	}
}

func TestOpen_Reopen(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	db := indextest.MustOpen(t, "", nil)
	if db.Recreated() {
		t.Fatal("fresh file reported as recreated")
	}
	p := randPack(rng, 100)
	addPack(t, db, p)
	db = db.MustReopen()
	if db.Recreated() {
		t.Fatal("reopen recreated the file")
	}
	wantLocation(t, db, p, p.Entries[42])
	if n, err := db.ChunkCount(); err != nil || n != 100 {
		t.Fatalf("ChunkCount = %d, %v", n, err)
	}
}

func TestOpen_Recreate(t *testing.T) {
	writeBolt := func(fn func(tx *bolt.Tx) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Update(fn); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  error
	}{
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("this is not a bbolt file, it is a cache that got clobbered"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"zeroed pages", func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"foreign bbolt", writeBolt(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("someone-else"))
			return err
		}), index.ErrBadMagic},
		{"other version", writeBolt(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			if err := b.Put([]byte("magic"), []byte("epoch-dedup index")); err != nil {
				return err
			}
			return b.Put([]byte("version"), []byte{0, 0, 0, 99})
		}), index.ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			tt.setup(t, path)
			db := indextest.MustOpen(t, path, nil)
			if !db.Recreated() {
				t.Fatal("not recreated")
			}
			if tt.want != nil && !errors.Is(db.RecreateReason(), tt.want) {
				t.Fatalf("reason %v, want %v", db.RecreateReason(), tt.want)
			}
			if _, err := os.Stat(path + ".broken"); err != nil {
				t.Fatalf("old file not kept aside: %v", err)
			}
			addPack(t, db, randPack(rand.New(rand.NewPCG(2, 2)), 10))
		})
	}
}

// A locked file is busy, not broken: Open must fail and leave it alone.
func TestOpen_ErrTimeout(t *testing.T) {
	db := indextest.MustOpen(t, "", nil)
	_, err := index.Open(db.Path(), &index.Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, berrors.ErrTimeout) {
		t.Fatalf("got %v, want timeout", err)
	}
	if _, err := os.Stat(db.Path() + ".broken"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("busy file moved aside")
	}
}

func TestDB_AddPack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	db := indextest.MustOpen(t, "", nil)
	p1, p2 := randPack(rng, 50), randPack(rng, 50)
	p2.Entries[0].ID = p1.Entries[0].ID // one chunk in two packs
	addPack(t, db, p1)
	addPack(t, db, p2)
	addPack(t, db, p1) // idempotent
	for _, e := range p1.Entries[1:] {
		wantLocation(t, db, p1, e)
	}
	if !db.HasPack(p1.Pack) || db.HasPack(randID(rng)) {
		t.Fatal("HasPack")
	}
	if n, _ := db.PackCount(); n != 2 {
		t.Fatalf("PackCount = %d", n)
	}
	if n, _ := db.ChunkCount(); n != 100 {
		t.Fatalf("ChunkCount = %d", n)
	}
	ids := []chunk.ID{p1.Entries[3].ID, randID(rng), p2.Entries[7].ID}
	var got []bool
	err := db.LookupMany(ids, func(i int, loc index.Location, ok bool) {
		got = append(got, ok)
		if ok && loc.Length != 4096 {
			t.Errorf("entry %d: %+v", i, loc)
		}
	})
	if err != nil || fmt.Sprint(got) != "[true false true]" {
		t.Fatalf("LookupMany: %v %v", got, err)
	}

	// Removing one of the two packs of the shared chunk keeps the other.
	if err := db.RemovePack(p1.Pack); err != nil {
		t.Fatal(err)
	}
	wantLocation(t, db, p2, p2.Entries[0])
	db = db.MustReopen()
	wantLocation(t, db, p2, p2.Entries[5])
	p3 := randPack(rng, 10)
	addPack(t, db, p3)
	if err := db.Merge(); err != nil {
		t.Fatal(err)
	}
	wantLocation(t, db, p3, p3.Entries[5])
	if err := db.RemovePack(p3.Pack); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Lookup(p1.Entries[5].ID); ok {
		t.Fatal("chunk of removed pack still found")
	}
	if err := db.RemovePack(p1.Pack); err != nil {
		t.Fatal(err)
	}

	bad := randPack(rng, 3)
	bad.Entries[1].BlockOffset = uint64(bad.Size)
	if err := db.AddPack(bad.Pack, bad.Size, bad.Entries); !errors.Is(err, index.ErrInvalidArgument) {
		t.Fatalf("entry past pack: %v", err)
	}
}

// TestDB_Merge_Interrupted leaves a merge half done, as a crash between
// two of its transactions does: part of a pending pack's entries in the
// chunk tree, the pack still pending. Check accepts it, lookups work, and
// the next merge finishes it.
// rawPackNo returns the number the chunk tree's keys name pack by, from
// the packnos bucket (number -> pack id) of a database opened with bbolt.
func rawPackNo(tx *bolt.Tx, pack chunk.ID) []byte {
	var no []byte
	_ = tx.Bucket([]byte("packnos")).ForEach(func(k, v []byte) error {
		if bytes.Equal(v, pack[:]) {
			no = bytes.Clone(k)
		}
		return nil
	})
	return no
}

func TestDB_Merge_Interrupted(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	path := filepath.Join(t.TempDir(), "index.db")
	db := indextest.MustOpen(t, path, &index.Options{MergeThreshold: 1 << 20})
	p := randPack(rng, 300)
	addPack(t, db, p)
	db.MustClose()

	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, e := range p.Entries[:100] {
			v := binary.BigEndian.AppendUint64(nil, e.BlockOffset)
			v = binary.BigEndian.AppendUint32(v, e.BlockLength)
			v = binary.BigEndian.AppendUint32(v, e.Offset)
			v = binary.BigEndian.AppendUint32(v, e.Length)
			if err := tx.Bucket([]byte("chunks")).Put(append(e.ID[:], rawPackNo(tx, p.Pack)...), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || b.Close() != nil {
		t.Fatal(err)
	}

	db = indextest.MustOpen(t, path, &index.Options{MergeThreshold: 1 << 20})
	db.MustCheck()
	for _, e := range p.Entries {
		wantLocation(t, db, p, e)
	}
	if err := db.Merge(); err != nil {
		t.Fatal(err)
	}
	db = db.MustReopen()
	for _, e := range p.Entries {
		wantLocation(t, db, p, e)
	}
	if n, _ := db.ChunkCount(); n != len(p.Entries) {
		t.Fatalf("ChunkCount = %d, want %d", n, len(p.Entries))
	}
}

// TestDB_Merge_Slices merges more entries than one merge transaction
// writes, into a tree that already holds some, and checks every location.
func TestDB_Merge_Slices(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	db := indextest.MustOpen(t, "", &index.Options{MergeThreshold: 1 << 20})
	var packs []index.PackRecord
	for range 40 {
		p := randPack(rng, 4096)
		packs = append(packs, p)
		addPack(t, db, p)
		if len(packs) == 5 {
			if err := db.Merge(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Merge(); err != nil {
		t.Fatal(err)
	}
	db = db.MustReopen()
	ids := make([]chunk.ID, 0, 40*4096)
	for _, p := range packs {
		for _, e := range p.Entries {
			ids = append(ids, e.ID)
		}
	}
	missing := 0
	if err := db.LookupMany(ids, func(_ int, _ index.Location, ok bool) {
		if !ok {
			missing++
		}
	}); err != nil || missing > 0 {
		t.Fatalf("LookupMany: %d missing, %v", missing, err)
	}
	// The last merge took 143360 entries in three id ranges: none lost or
	// written twice at a range boundary.
	if n, err := db.ChunkCount(); err != nil || n != len(ids) {
		t.Fatalf("ChunkCount %d (%v), want %d", n, err, len(ids))
	}
	wantLocation(t, db, packs[33], packs[33].Entries[4000])
}

func TestDB_Ingest(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	db := indextest.MustOpen(t, "", nil)
	packs := []index.PackRecord{randPack(rng, 10), randPack(rng, 20)}
	for range 2 {
		if err := db.Ingest("push-1", packs); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := db.Ingested("push-1"); err != nil || !ok {
		t.Fatalf("Ingested = %v, %v", ok, err)
	}
	if ok, _ := db.Ingested("push-2"); ok {
		t.Fatal("unknown name ingested")
	}
	if n, _ := db.ChunkCount(); n != 30 {
		t.Fatalf("ChunkCount = %d", n)
	}
	// A bad pack fails the whole ingest: neither packs nor name recorded.
	bad := []index.PackRecord{randPack(rng, 5), {Pack: randID(rng), Size: -1}}
	if err := db.Ingest("push-3", bad); !errors.Is(err, index.ErrInvalidArgument) {
		t.Fatalf("got %v", err)
	}
	if ok, _ := db.Ingested("push-3"); ok || db.HasPack(bad[0].Pack) {
		t.Fatal("failed ingest left traces")
	}
}

func TestDB_IngestAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	db := indextest.MustOpen(t, "", nil)
	shared := randPack(rng, 8)
	gone := randPack(rng, 4)
	if _, err := db.IngestTombstone("gc/deleted/1", []chunk.ID{gone.Pack}); err != nil {
		t.Fatal(err)
	}
	if err := db.Ingest("index/a", []index.PackRecord{randPack(rng, 3)}); err != nil {
		t.Fatal(err)
	}
	fresh := []index.PackRecord{randPack(rng, 10), randPack(rng, 20)}
	objs := []index.IndexObject{
		{Name: "index/a", Packs: []index.PackRecord{randPack(rng, 50)}}, // already ingested: skipped whole
		{Name: "index/b", Packs: []index.PackRecord{fresh[0], shared}},
		{Name: "index/c", Packs: []index.PackRecord{fresh[1], shared, gone}}, // shared twice in one batch, gone refused
	}
	if err := db.IngestAll(objs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index/a", "index/b", "index/c"} {
		if ok, err := db.Ingested(name); err != nil || !ok {
			t.Errorf("Ingested(%s) = %v, %v", name, ok, err)
		}
	}
	if n, _ := db.ChunkCount(); n != 3+10+20+8 {
		t.Fatalf("ChunkCount = %d, want %d", n, 3+10+20+8)
	}
	for _, p := range append(fresh, shared) {
		for _, e := range p.Entries {
			wantLocation(t, db, p, e)
		}
	}
	if db.HasPack(gone.Pack) || db.HasPack(objs[0].Packs[0].Pack) {
		t.Fatal("a tombstoned pack or one of an already ingested object was added")
	}
	// One bad pack fails the whole batch: no name and no pack recorded.
	bad := []index.IndexObject{
		{Name: "index/d", Packs: []index.PackRecord{randPack(rng, 5)}},
		{Name: "index/e", Packs: []index.PackRecord{{Pack: randID(rng), Size: -1}}},
	}
	err := db.IngestAll(bad)
	if !errors.Is(err, index.ErrInvalidArgument) || !strings.Contains(err.Error(), "index/e") {
		t.Fatalf("got %v, want ErrInvalidArgument naming index/e", err)
	}
	if ok, _ := db.Ingested("index/d"); ok || db.HasPack(bad[0].Packs[0].Pack) {
		t.Fatal("failed batch left traces")
	}
}

// TestDB_LocalFiles_Large records a file of more chunks than one
// transaction takes, one chunk repeated far apart in the file, then
// replaces it: every chunk is found at its first offset, then none is.
func TestDB_LocalFiles_Large(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	db := indextest.MustOpen(t, "", &index.Options{MergeThreshold: 1000})
	const n = 2500 // three transactions
	chunks := make([]index.LocalChunk, n)
	for i := range chunks {
		chunks[i] = index.LocalChunk{ID: randID(rng), Offset: int64(i) * 4096, Length: 4096}
	}
	chunks[n-1].ID = chunks[3].ID // a repeat: the first offset wins
	path := filepath.Join(t.TempDir(), "memory-ranges")
	v := index.Validator{Size: n * 4096}
	if err := db.AddLocalFile(path, v, slices.Values(chunks)); err != nil {
		t.Fatal(err)
	}
	for i := range n - 1 { // every id range recorded whole
		refs, err := db.FindLocal(chunks[i].ID)
		if err != nil || len(refs) != 1 || refs[0].Offset != chunks[i].Offset || refs[0].Path != path {
			t.Fatalf("chunk %d: FindLocal = %+v, %v", i, refs, err)
		}
	}
	// An invalid chunk at the end fails the call before anything changes.
	bad := append(slices.Clone(chunks[:n-1]), index.LocalChunk{ID: randID(rng), Offset: n * 4096, Length: 4096})
	if err := db.AddLocalFile(path, v, slices.Values(bad)); !errors.Is(err, index.ErrInvalidArgument) {
		t.Fatalf("chunk past the end: %v", err)
	}
	if refs, _ := db.FindLocal(chunks[0].ID); len(refs) != 1 {
		t.Fatalf("refused AddLocalFile changed the records: %+v", refs)
	}
	if err := db.AddLocalFile(path, index.Validator{Size: 4096}, slices.Values([]index.LocalChunk{{ID: randID(rng), Length: 4096}})); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1500, n - 2} {
		if refs, _ := db.FindLocal(chunks[i].ID); len(refs) != 0 {
			t.Fatalf("chunk %d still recorded after the file was replaced: %+v", i, refs)
		}
	}
}

// TestDB_LocalFiles_Revision records a file, then a new revision of it at
// the same path (pages rewritten, moved, dropped and added, as a VM saved
// again): every record is the new revision's, none of the old content's
// is left, and an empty revision leaves nothing.
func TestDB_LocalFiles_Revision(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	db := indextest.MustOpen(t, "", &index.Options{MergeThreshold: 1000})
	const n = 3000
	first := make([]index.LocalChunk, n)
	for i := range first {
		first[i] = index.LocalChunk{ID: randID(rng), Offset: int64(i) * 4096, Length: 4096}
	}
	path := filepath.Join(t.TempDir(), "memory-ranges")
	if err := db.AddLocalFile(path, index.Validator{Size: n * 4096, Inode: 1}, slices.Values(first)); err != nil {
		t.Fatal(err)
	}
	second := slices.Clone(first)
	for i := 0; i < n; i += 50 {
		second[i].ID = randID(rng) // rewritten
	}
	second[7].Offset, second[8].Offset = second[8].Offset, second[7].Offset // moved
	dropped := second[n-1].ID
	second = append(second[:n-1], index.LocalChunk{ID: randID(rng), Offset: (n - 1) * 4096, Length: 100})
	v2 := index.Validator{Size: n * 4096, Inode: 2}
	if err := db.AddLocalFile(path, v2, slices.Values(second)); err != nil {
		t.Fatal(err)
	}
	for i, c := range second {
		refs, err := db.FindLocal(c.ID)
		if err != nil || len(refs) != 1 || refs[0].Offset != c.Offset || refs[0].Length != c.Length || refs[0].Validator != v2 {
			t.Fatalf("chunk %d: FindLocal = %+v, %v; want offset %d, length %d, the new validator", i, refs, err, c.Offset, c.Length)
		}
	}
	for _, id := range []chunk.ID{first[0].ID, first[50].ID, dropped} {
		if refs, _ := db.FindLocal(id); len(refs) != 0 {
			t.Fatalf("a chunk the new revision lacks is still recorded: %+v", refs)
		}
	}
	if files, _ := db.LocalFiles(); len(files) != 1 {
		t.Fatalf("LocalFiles = %v", files)
	}
	db.MustCheck()
	if err := db.AddLocalFile(path, index.Validator{Inode: 3}, slices.Values([]index.LocalChunk(nil))); err != nil {
		t.Fatal(err)
	}
	for _, c := range second[:10] {
		if refs, _ := db.FindLocal(c.ID); len(refs) != 0 {
			t.Fatalf("an empty revision left records: %+v", refs)
		}
	}
}

func TestDB_LocalFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	db := indextest.MustOpen(t, "", nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "memory-ranges")
	if err := os.WriteFile(path, make([]byte, 16384), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	v := index.ValidatorFor(fi)
	if v.Size != 16384 || v.ModTimeNs == 0 || v.Inode == 0 {
		t.Fatalf("validator %+v", v)
	}
	a, b, c := randID(rng), randID(rng), randID(rng)
	chunks := []index.LocalChunk{{a, 0, 4096}, {b, 4096, 4096}, {a, 8192, 4096}, {c, 12288, 4096}}
	if err := db.AddLocalFile(path, v, slices.Values(chunks)); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "cow.raw")
	if err := db.AddLocalFile(other, index.Validator{Size: 100}, slices.Values([]index.LocalChunk{{a, 50, 50}})); err != nil {
		t.Fatal(err)
	}
	refs, err := db.FindLocal(a)
	if err != nil || len(refs) != 2 {
		t.Fatalf("FindLocal = %+v, %v", refs, err)
	}
	for _, r := range refs {
		if r.Path == path && (r.Offset != 0 || r.Validator != v) {
			t.Fatalf("ref %+v: want the first offset and the validator", r)
		}
	}
	// Replace: the new content no longer holds b.
	v.Size = 8192
	if err := db.AddLocalFile(path, v, slices.Values([]index.LocalChunk{{c, 0, 4096}})); err != nil {
		t.Fatal(err)
	}
	if refs, _ := db.FindLocal(b); len(refs) != 0 {
		t.Fatalf("stale ref after replace: %+v", refs)
	}
	if refs, _ := db.FindLocal(c); len(refs) != 1 || refs[0].Offset != 0 {
		t.Fatalf("FindLocal after replace: %+v", refs)
	}
	if err := db.ForgetLocalFile(path); err != nil {
		t.Fatal(err)
	}
	if err := db.ForgetLocalFile(path); err != nil {
		t.Fatal(err)
	}
	if refs, _ := db.FindLocal(c); len(refs) != 0 {
		t.Fatalf("ref after forget: %+v", refs)
	}
	if files, err := db.LocalFiles(); err != nil || len(files) != 1 || files[0] != other {
		t.Fatalf("LocalFiles = %v, %v", files, err)
	}
	for _, tc := range []struct {
		path   string
		chunks []index.LocalChunk
	}{
		{"relative/path", nil},
		{"/a/../b", nil},
		{other, []index.LocalChunk{{a, 90, 20}}},
		{other, []index.LocalChunk{{a, -1, 1}}},
		{other, []index.LocalChunk{{chunk.ID{}, 0, 1}}},
	} {
		if err := db.AddLocalFile(tc.path, index.Validator{Size: 100}, slices.Values(tc.chunks)); !errors.Is(err, index.ErrInvalidArgument) {
			t.Errorf("AddLocalFile(%q, slices.Values(%v)) = %v", tc.path, tc.chunks, err)
		}
	}
}

// TestDB_Check injects inconsistencies behind the index's back and expects
// Check to name them.
func TestDB_Check(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	tests := []struct {
		name   string
		inject func(tx *bolt.Tx, p index.PackRecord) error
	}{
		{"pack record gone", func(tx *bolt.Tx, p index.PackRecord) error {
			return tx.Bucket([]byte("packs")).Delete(p.Pack[:])
		}},
		{"location gone", func(tx *bolt.Tx, p index.PackRecord) error {
			return tx.Bucket([]byte("chunks")).Delete(append(p.Entries[0].ID[:], rawPackNo(tx, p.Pack)...))
		}},
		{"pack number gone", func(tx *bolt.Tx, p index.PackRecord) error {
			return tx.Bucket([]byte("packnos")).Delete(rawPackNo(tx, p.Pack))
		}},
		{"file gone", func(tx *bolt.Tx, _ index.PackRecord) error {
			c := tx.Bucket([]byte("files")).Cursor()
			k, _ := c.First()
			return tx.Bucket([]byte("files")).Delete(k)
		}},
		{"meta version", func(tx *bolt.Tx, _ index.PackRecord) error {
			return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte{0, 0, 0, 7})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			db, err := index.Open(path, &index.Options{MergeThreshold: -1})
			if err != nil {
				t.Fatal(err)
			}
			p := randPack(rng, 20)
			if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
				t.Fatal(err)
			}
			if err := db.AddLocalFile("/x", index.Validator{Size: 10}, slices.Values([]index.LocalChunk{{p.Entries[0].ID, 0, 10}})); err != nil {
				t.Fatal(err)
			}
			if err := db.Check(); err != nil {
				t.Fatalf("clean db: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Update(func(tx *bolt.Tx) error { return tt.inject(tx, p) }); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.name == "meta version" {
				db, err := index.Open(path, nil)
				if err != nil || !db.Recreated() {
					t.Fatalf("open: %v, recreated %v", err, db != nil && db.Recreated())
				}
				_ = db.Close()
				return
			}
			db, err = index.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Check()
			if !errors.Is(err, index.ErrCorrupt) {
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

func TestDB_ConcurrentReaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	db := indextest.MustOpen(t, "", nil)
	first := randPack(rng, 1000)
	addPack(t, db, first)
	more := make([]index.PackRecord, 20)
	for i := range more {
		more[i] = randPack(rng, 200)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := first.Entries[i%len(first.Entries)]
				loc, ok, err := db.Lookup(e.ID)
				if err != nil || !ok || loc.Pack != first.Pack || loc.Offset != e.Offset {
					errs <- fmt.Errorf("lookup %d: %+v %v %v", i, loc, ok, err)
					return
				}
			}
		})
	}
	for _, p := range more {
		addPack(t, db, p)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func benchPacks(n, per int) []index.PackRecord {
	rng := rand.New(rand.NewPCG(8, 8))
	packs := make([]index.PackRecord, n)
	for i := range packs {
		packs[i] = randPack(rng, per)
	}
	return packs
}

// BenchmarkDB_AddPack inserts the chunks of a 1 GiB file at 4 KiB (131072
// distinct random ids) as 32 packs of 4096 entries into an empty index,
// one transaction per pack, then merges them into the chunk tree (the
// merge is timed too). MergeEach merges on every pack instead, which is
// what a plain B+tree insert per pack costs.
func BenchmarkDB_AddPack(b *testing.B) {
	packs := benchPacks(32, 4096)
	for _, bc := range []struct {
		name string
		opts index.Options
	}{
		{"Buffered", index.Options{}},
		{"BufferedNoSync", index.Options{NoSync: true}},
		{"MergeEach", index.Options{MergeThreshold: -1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				db, err := index.Open(filepath.Join(b.TempDir(), "index.db"), &bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for _, p := range packs {
					if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.Merge(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(32*4096), "ns/chunk")
		})
	}
}

func BenchmarkDB_Lookup(b *testing.B) {
	packs := benchPacks(32, 4096)
	db, err := index.Open(filepath.Join(b.TempDir(), "index.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	defer func() {
		if err := db.Check(); err != nil {
			b.Fatal(err)
		}
	}()
	ids := make([]chunk.ID, 0, 32*4096)
	for _, p := range packs {
		if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
			b.Fatal(err)
		}
		for _, e := range p.Entries {
			ids = append(ids, e.ID)
		}
	}
	if err := db.Merge(); err != nil {
		b.Fatal(err)
	}
	b.Run("Lookup", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok, err := db.Lookup(ids[i%len(ids)]); !ok || err != nil {
				b.Fatal(ok, err)
			}
			i += 7919
		}
	})
	// In pack order, as a re-push of unchanged memory or a pull meets the
	// chunks (answered from the tables of the packs last found), and
	// shuffled (every id a descent of the chunk tree).
	shuffled := slices.Clone(ids)
	rand.New(rand.NewPCG(5, 5)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, order := range []struct {
		name string
		ids  []chunk.ID
	}{{"LookupMany", ids}, {"LookupMany/shuffled", shuffled}} {
		b.Run(order.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				found := 0
				if err := db.LookupMany(order.ids, func(int, index.Location, bool) { found++ }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(order.ids)), "ns/id")
		})
	}
}

// TestDB_LookupMany_Orders checks LookupMany against Lookup for ids in
// every shape its walk distinguishes: sorted, shuffled, duplicated,
// absent (before, between and after the stored ids), sparse and dense
// over the tree, pending and merged, across slice boundaries.
func TestDB_LookupMany_Orders(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	db := indextest.MustOpen(t, "", &index.Options{MergeThreshold: 1 << 20})
	var stored []chunk.ID
	for i := range 12 {
		p := randPack(rng, 4096)
		addPack(t, db, p)
		for _, e := range p.Entries {
			stored = append(stored, e.ID)
		}
		if i == 9 {
			if err := db.Merge(); err != nil { // the last two stay pending
				t.Fatal(err)
			}
		}
	}
	absent := func(n int) []chunk.ID {
		ids := make([]chunk.ID, n)
		for i := range ids {
			ids[i] = randID(rng)
		}
		ids[0] = chunk.ID{}                                           // before every key
		ids[n-1] = chunk.ID(bytes.Repeat([]byte{0xff}, chunk.IDSize)) // after every key
		return ids
	}
	shuffled := slices.Clone(stored)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	sorted := slices.Clone(stored)
	slices.SortFunc(sorted, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	var sparse, mixed, dups []chunk.ID
	for i := 0; i < len(sorted); i += 97 {
		sparse = append(sparse, sorted[i])
	}
	for i, id := range shuffled[:5000] {
		mixed = append(mixed, id)
		if i%3 == 0 {
			mixed = append(mixed, randID(rng))
		}
		if i%50 == 0 {
			dups = append(dups, id, id, id)
		}
	}
	for _, tc := range []struct {
		name string
		ids  []chunk.ID
	}{
		{"sorted", sorted},
		{"shuffled", shuffled},
		{"sparse", sparse},
		{"absent", absent(1000)},
		{"mixed", mixed},
		{"duplicates", dups},
		{"one", stored[:1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := 0
			err := db.LookupMany(tc.ids, func(i int, loc index.Location, ok bool) {
				if i != seen {
					t.Fatalf("fn called for %d, want %d (in order)", i, seen)
				}
				seen++
				want, wantOK, err := db.Lookup(tc.ids[i])
				if err != nil || ok != wantOK || loc != want {
					t.Fatalf("id %d: LookupMany %v %v, Lookup %v %v %v", i, loc, ok, want, wantOK, err)
				}
			})
			if err != nil || seen != len(tc.ids) {
				t.Fatalf("LookupMany: %d of %d, %v", seen, len(tc.ids), err)
			}
		})
	}
}

// TestDB_LookupDuringMerge looks chunks up while merges move them from
// the pending entries into the chunk tree: every chunk recorded before a
// lookup began is found, by LookupMany and by LookupManyAccept, however
// the lookup's transaction and the merge interleave.
func TestDB_LookupDuringMerge(t *testing.T) {
	db, err := index.Open(filepath.Join(t.TempDir(), "index.db"), &index.Options{MergeThreshold: 1 << 30, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 3))
	packs := make([]index.PackRecord, 300)
	for i := range packs {
		packs[i] = randPack(rng, 64)
	}
	var added addedIDs
	done := make(chan struct{})
	defer func() { <-done }() // before Close
	go func() {
		defer close(done)
		for _, p := range packs {
			if err := added.add(db, p); err != nil {
				t.Error(err)
				return
			}
			if err := db.Merge(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	all := func(chunk.ID) bool { return true }
	for round := 0; ; round++ {
		select {
		case <-done:
			return
		default:
		}
		ids := added.snapshot()
		check := func(i int, _ index.Location, ok bool) {
			if !ok {
				t.Fatalf("round %d: chunk %d of %d (%s) not found while merging", round, i, len(ids), ids[i])
			}
		}
		var err error
		if round%2 == 0 {
			err = db.LookupMany(ids, check)
		} else {
			err = db.LookupManyAccept(ids, all, check)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDB_BackgroundMerge records packs from several goroutines with
// merges in the background while lookups run: every chunk recorded before
// a lookup began is found, nothing is left pending after Merge, and the
// file passes Check, before and after a reopen.
func TestDB_BackgroundMerge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	opts := &index.Options{MergeThreshold: 512, BackgroundMerge: true, NoSync: true}
	db, err := index.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	packs := make([]index.PackRecord, 240)
	for i := range packs {
		packs[i] = randPack(rng, 100)
	}
	var (
		added addedIDs
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for _, p := range packs[w*60 : (w+1)*60] {
				if err := added.add(db, p); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	lookAll := func(when string) {
		ids := added.snapshot()
		err := db.LookupMany(ids, func(i int, _ index.Location, ok bool) {
			if !ok {
				t.Fatalf("%s: chunk %d of %d not found", when, i, len(ids))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for running := true; running; {
		select {
		case <-writersDone:
			running = false
		default:
			lookAll("while merging")
		}
	}
	lookAll("after the writers")
	if err := db.Merge(); err != nil {
		t.Fatal(err)
	}
	if n, err := db.ChunkCount(); err != nil || n != len(packs)*100 {
		t.Fatalf("ChunkCount %d, %v; want %d", n, err, len(packs)*100)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = index.Open(path, opts); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lookAll("after a reopen")
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// addedIDs collects the chunk ids of the packs recorded so far, for
// lookups that run beside the writers.
type addedIDs struct {
	mu  sync.Mutex
	ids []chunk.ID
}

// add records p in db, then notes its ids.
func (a *addedIDs) add(db *index.DB, p index.PackRecord) error {
	if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range p.Entries {
		a.ids = append(a.ids, e.ID)
	}
	return nil
}

// snapshot returns the ids noted so far.
func (a *addedIDs) snapshot() []chunk.ID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ids)
}

// TestDB_StageAll stages two batches of index objects: served from memory
// while they fit below the threshold, else left for Merge, which makes all
// of them visible. Staged packs a crash leaves unmerged are visible after
// the next Open (merged there when many).
func TestDB_StageAll(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold int  // batches of 320 and 160 entries
		first     bool // whether the first batch answers before Merge
		second    bool // the second
		merge     bool // Merge before closing; else reopen with the packs as they are
	}{
		{"in memory", 1 << 16, true, true, false},
		{"first in memory, second staged", 400, true, false, true},
		{"staged, merged", 64, false, false, true},
		{"staged, reopened", 64, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, 6))
			db := indextest.MustOpen(t, "", &index.Options{MergeThreshold: tc.threshold, NoSync: true})
			var objs []index.IndexObject
			for i := range 6 {
				objs = append(objs, index.IndexObject{
					Name:  fmt.Sprintf("index/%d", i),
					Packs: []index.PackRecord{randPack(rng, 40), randPack(rng, 40)},
				})
			}
			for _, batch := range [][]index.IndexObject{objs[:4], objs[4:]} {
				if err := db.StageAll(batch); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := db.Staged(), !tc.second; got != want {
				t.Fatalf("Staged() = %v, want %v", got, want)
			}
			for _, o := range objs {
				if ok, err := db.Ingested(o.Name); err != nil || !ok {
					t.Fatalf("Ingested(%s) = %v, %v", o.Name, ok, err)
				}
			}
			for i, want := range map[int]bool{0: tc.first, 5: tc.second} {
				if _, ok, _ := db.Lookup(objs[i].Packs[0].Entries[0].ID); ok != want {
					t.Fatalf("before Merge, an entry of object %d found: %v, want %v", i, ok, want)
				}
			}
			db.MustCheck()
			if tc.merge {
				if err := db.Merge(); err != nil {
					t.Fatal(err)
				}
			} else {
				db = db.MustReopen()
			}
			if db.Staged() {
				t.Fatal("Staged() = true after the merge")
			}
			for _, o := range objs {
				for _, p := range o.Packs {
					for _, e := range p.Entries {
						wantLocation(t, db, p, e)
					}
				}
			}
			if err := db.Merge(); err != nil {
				t.Fatal(err)
			}
			if n, err := db.ChunkCount(); err != nil || n != 6*2*40 {
				t.Fatalf("ChunkCount = %d, %v; want %d", n, err, 6*2*40)
			}
		})
	}
}

// TestDB_LookupFilter grows the chunk tree past the lookup filter's first
// capacity (it is rebuilt larger) with lookups between merges: every id
// recorded is found by Lookup, LookupMany and LookupManyAccept, ids never
// recorded or removed are not, and Check agrees with the filter.
func TestDB_LookupFilter(t *testing.T) {
	db := indextest.MustOpen(t, filepath.Join(t.TempDir(), "index.db"), &index.Options{MergeThreshold: 8192, NoSync: true})
	rng := rand.New(rand.NewPCG(8, 9))
	var packs []index.PackRecord
	var ids []chunk.ID
	absent := make([]chunk.ID, 5000) // enough misses in the first round to build the filter
	for i := range absent {
		absent[i] = randID(rng)
	}
	all := func(chunk.ID) bool { return true }
	lookAll := func(round int) {
		t.Helper()
		want := func(what string, ids []chunk.ID, found bool) func(int, index.Location, bool) {
			return func(i int, _ index.Location, ok bool) {
				if ok != found {
					t.Fatalf("round %d: %s: id %d of %d found=%v", round, what, i, len(ids), ok)
				}
			}
		}
		if err := db.LookupMany(ids, want("LookupMany", ids, true)); err != nil {
			t.Fatal(err)
		}
		if err := db.LookupManyAccept(ids, all, want("LookupManyAccept", ids, true)); err != nil {
			t.Fatal(err)
		}
		if err := db.LookupMany(absent, want("LookupMany of absent ids", absent, false)); err != nil {
			t.Fatal(err)
		}
		for _, p := range packs[len(packs)-3:] {
			wantLocation(t, db, p, p.Entries[rng.IntN(len(p.Entries))])
		}
	}
	for round := range 10 {
		for range 4 {
			p := randPack(rng, 2048)
			addPack(t, db, p)
			packs = append(packs, p)
			for _, e := range p.Entries {
				ids = append(ids, e.ID)
			}
		}
		lookAll(round)
	}
	db.MustCheck()
	// A removed pack's ids stay in the filter; the tree still says no.
	gone := packs[0]
	if err := db.RemovePack(gone.Pack); err != nil {
		t.Fatal(err)
	}
	for i, e := range gone.Entries {
		if _, ok, err := db.Lookup(e.ID); err != nil || ok {
			t.Fatalf("removed entry %d: ok=%v err=%v", i, ok, err)
		}
	}
	packs, ids = packs[1:], ids[len(gone.Entries):]
	lookAll(10)
	db = db.MustReopen()
	lookAll(11)
}

// TestDB_LookupRecentPacks looks chunks up in the order their packs hold
// them, the order a re-push or a pull meets them, stepping out to packs
// that share some chunks and back (the lookups answer from the tables of
// the packs last found, see recentPacks): every answer is a location the
// chunk really has, a pack accept rejects is never answered even while
// its table is the most recent, and a removed pack is forgotten by the
// next lookup.
func TestDB_LookupRecentPacks(t *testing.T) {
	for _, merged := range []bool{false, true} {
		t.Run(map[bool]string{false: "pending", true: "merged"}[merged], func(t *testing.T) {
			db := indextest.MustOpen(t, filepath.Join(t.TempDir(), "index.db"), &index.Options{MergeThreshold: 1 << 20, NoSync: true})
			rng := rand.New(rand.NewPCG(3, 4))
			base := randPack(rng, 600)
			// Six packs, more than a lookup keeps at hand, each holding a
			// copy of some of base's chunks and chunks of its own.
			var others []index.PackRecord
			for k := range 6 {
				p := randPack(rng, 40)
				for i := range 10 {
					p.Entries[i].ID = base.Entries[k*100+i*7].ID
				}
				others = append(others, p)
			}
			addPack(t, db, base)
			for _, p := range others {
				addPack(t, db, p)
			}
			if merged {
				if err := db.Merge(); err != nil {
					t.Fatal(err)
				}
			}
			where := map[chunk.ID][]index.Location{}
			for _, p := range append([]index.PackRecord{base}, others...) {
				for _, e := range p.Entries {
					where[e.ID] = append(where[e.ID], index.Location{Pack: p.Pack, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length})
				}
			}
			// base's chunks in order, every 50th followed by a run of
			// another pack's own chunks.
			var ids []chunk.ID
			for i, e := range base.Entries {
				ids = append(ids, e.ID)
				if i%50 == 49 {
					for _, o := range others[(i/50)%len(others)].Entries[10:15] {
						ids = append(ids, o.ID)
					}
				}
			}
			check := func(what string, reject chunk.ID) func(int, index.Location, bool) {
				return func(i int, loc index.Location, ok bool) {
					t.Helper()
					if !ok {
						if slices.ContainsFunc(where[ids[i]], func(l index.Location) bool { return l.Pack != reject }) {
							t.Fatalf("%s: id %d not found", what, i)
						}
						return
					}
					if loc.Pack == reject || !slices.Contains(where[ids[i]], loc) {
						t.Fatalf("%s: id %d at %+v, want one of %+v (not in pack %s)", what, i, loc, where[ids[i]], reject)
					}
				}
			}
			if err := db.LookupMany(ids, check("LookupMany", chunk.ID{})); err != nil {
				t.Fatal(err)
			}
			// Pending, a chunk keeps one location: LookupManyAccept sees
			// them all once merged (its contract).
			if err := db.Merge(); err != nil {
				t.Fatal(err)
			}
			for _, reject := range []chunk.ID{base.Pack, others[0].Pack} {
				if err := db.LookupManyAccept(ids, func(p chunk.ID) bool { return p != reject }, check("LookupManyAccept", reject)); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.RemovePack(base.Pack); err != nil {
				t.Fatal(err)
			}
			if err := db.LookupMany(ids, check("LookupMany after RemovePack", base.Pack)); err != nil {
				t.Fatal(err)
			}
			db.MustCheck()
		})
	}
}
