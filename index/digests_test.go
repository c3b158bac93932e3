package index_test

import (
	"math/rand/v2"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/index/indextest"
)

func TestDB_Digests(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	db := indextest.MustOpen(t, "", nil)
	a, b := randID(rng), randID(rng)
	var da, db2 [index.DigestSize]byte
	copy(da[:], "sha-256 of the bytes a names....")
	copy(db2[:], "sha-256 of the bytes b names....")
	if _, ok, err := db.KnownDigest(a); ok || err != nil {
		t.Fatalf("KnownDigest of an unknown key = %v, %v", ok, err)
	}
	for _, kv := range []struct {
		key chunk.ID
		d   [index.DigestSize]byte
	}{{a, db2}, {a, da}, {b, db2}} { // the later call wins
		if err := db.RememberDigest(kv.key, kv.d); err != nil {
			t.Fatal(err)
		}
	}
	db = db.MustReopen()
	for _, want := range []struct {
		key chunk.ID
		d   [index.DigestSize]byte
	}{{a, da}, {b, db2}} {
		got, ok, err := db.KnownDigest(want.key)
		if err != nil || !ok || got != want.d {
			t.Errorf("KnownDigest(%s) = %q, %v, %v; want %q", want.key, got, ok, err, want.d)
		}
	}
	db.MustCheck()
}
