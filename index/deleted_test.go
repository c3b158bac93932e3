package index_test

import (
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
)

func TestTombstone(t *testing.T) {
	db, err := index.Open(filepath.Join(t.TempDir(), "i.db"), &index.Options{MergeThreshold: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	shared, only := chunk.Sum([]byte("shared")), chunk.Sum([]byte("only in x"))
	x, y := chunk.Sum([]byte("pack x")), chunk.Sum([]byte("pack y"))
	recX := index.PackRecord{Pack: x, Size: 100, Entries: []index.PackEntry{
		{ID: shared, BlockOffset: 5, BlockLength: 20, Length: 6}, {ID: only, BlockOffset: 25, BlockLength: 20, Length: 9},
	}}
	recY := index.PackRecord{Pack: y, Size: 100, Entries: []index.PackEntry{{ID: shared, BlockOffset: 5, BlockLength: 20, Length: 6}}}
	if err := db.Ingest("blobs/index/a", []index.PackRecord{recX}); err != nil {
		t.Fatal(err)
	}
	if err := db.Ingest("blobs/index/b", []index.PackRecord{recY}); err != nil {
		t.Fatal(err)
	}
	// Pending locations: the accept lookup still finds y once merged.
	if err := db.Merge(); err != nil {
		t.Fatal(err)
	}
	var got []chunk.ID
	err = db.LookupManyAccept([]chunk.ID{shared, only}, func(p chunk.ID) bool { return p != x }, func(i int, loc index.Location, ok bool) {
		if ok {
			got = append(got, loc.Pack)
		} else {
			got = append(got, chunk.ID{})
		}
	})
	if err != nil || got[0] != y || got[1] != (chunk.ID{}) {
		t.Fatalf("accept lookup: %v %v", got, err)
	}
	n, err := db.IngestTombstone("gc/deleted/1", []chunk.ID{x})
	if err != nil || n != 1 {
		t.Fatalf("tombstone: %d %v", n, err)
	}
	if n, _ := db.IngestTombstone("gc/deleted/1", []chunk.ID{x}); n != 0 {
		t.Fatal("tombstone ingested twice")
	}
	if loc, ok, _ := db.Lookup(shared); !ok || loc.Pack != y {
		t.Fatalf("copy in y lost: %v %v", loc, ok)
	}
	if _, ok, _ := db.Lookup(only); ok {
		t.Fatal("chunk of a deleted pack still located")
	}
	// An old index object naming x does not bring it back, nor AddPack.
	if err := db.Ingest("blobs/index/c", []index.PackRecord{recX}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddPack(x, 100, recX.Entries); err != nil {
		t.Fatal(err)
	}
	if db.HasPack(x) || !db.IsDeleted(x) || db.IsDeleted(y) {
		t.Fatal("deleted pack re-added")
	}
	packs := 0
	if err := db.ForEachPack(func(p index.PackRecord) error {
		packs++
		if p.Pack != y || len(p.Entries) != 1 || p.Entries[0].ID != shared || p.Entries[0].BlockOffset != 5 {
			t.Fatalf("pack %+v", p)
		}
		return nil
	}); err != nil || packs != 1 {
		t.Fatalf("walk: %d packs, %v", packs, err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	// A tombstone for a pack still pending (not merged) works too.
	z := chunk.Sum([]byte("pack z"))
	if err := db.AddPack(z, 100, []index.PackEntry{{ID: only, BlockOffset: 5, BlockLength: 20, Length: 9}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.IngestTombstone("gc/deleted/2", []chunk.ID{z}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Lookup(only); ok {
		t.Fatal("chunk of a deleted pending pack still located")
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
