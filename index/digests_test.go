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

func TestDB_RecipeIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	db := indextest.MustOpen(t, "", nil)
	a, b := randID(rng), randID(rng)
	ra, rb := randID(rng), randID(rng)
	if _, ok, err := db.KnownRecipe(a); ok || err != nil {
		t.Fatalf("KnownRecipe of an unknown key = %v, %v", ok, err)
	}
	for _, kv := range [][2]chunk.ID{{a, rb}, {a, ra}, {b, rb}} { // the later call wins
		if err := db.RememberRecipe(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	db = db.MustReopen()
	for _, want := range [][2]chunk.ID{{a, ra}, {b, rb}} {
		got, ok, err := db.KnownRecipe(want[0])
		if err != nil || !ok || got != want[1] {
			t.Errorf("KnownRecipe(%s) = %s, %v, %v; want %s", want[0], got, ok, err, want[1])
		}
	}
	db.MustCheck()
}
