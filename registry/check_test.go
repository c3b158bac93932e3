package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/pack"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// pushDirRevisions pushes two revisions of a folder as name:v1 and name:v2
// and returns the folder.
func pushDirRevisions(t *testing.T, r *registry.Registry, name string) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "memory-ranges"), 256, 1)
	writeImage(t, filepath.Join(dir, "disk.raw"), 128, 2)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PushDir(ctx, dir, name, "v1", nil); err != nil {
		t.Fatal(err)
	}
	rewritePages(t, filepath.Join(dir, "memory-ranges"), 8, 3)
	if _, _, err := r.PushDir(ctx, dir, name, "v2", nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// storeKeys lists the keys under prefix.
func storeKeys(t testing.TB, store *objectstore.Client, prefix string) []string {
	t.Helper()
	var keys []string
	err := store.List(context.Background(), prefix, func(oi objectstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("no keys under %s", prefix)
	}
	return keys
}

func findProblem(rep *registry.CheckReport, kind, object string) *registry.Problem {
	for i := range rep.Problems {
		p := &rep.Problems[i]
		if p.Kind == kind && (object == "" || p.Object == object) {
			return p
		}
	}
	return nil
}

func TestCheck_Sound(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			pushDirRevisions(t, r, "vm")
			for _, readData := range []bool{false, true} {
				rep, err := r.Check(ctx, registry.CheckOptions{ReadData: readData})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.OK() {
					t.Fatalf("problems in a sound store: %+v", rep.Problems)
				}
				// Two tag manifests and two by digest.
				if rep.Manifests != 4 || rep.Packs == 0 || rep.Chunks == 0 || rep.Recipes < 3 {
					t.Fatalf("report %+v", rep)
				}
				if readData && (rep.PacksRead != rep.Packs || rep.BytesRead == 0) {
					t.Fatalf("read-data report %+v", rep)
				}
			}
		})
	}
}

func TestCheck_Problems(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	pushDirRevisions(t, r, "vm")
	packs := storeKeys(t, store, "blobs/packs/")

	// A fresh node checks: its index knows only what the store says.
	check := func(readData bool) *registry.CheckReport {
		t.Helper()
		rep, err := newRegistry(t, store).Check(ctx, registry.CheckOptions{ReadData: readData})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	// Corrupt the last pack in place, same size.
	corrupt := packs[len(packs)-1]
	data, _, err := store.GetBytes(ctx, corrupt, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+16; i++ {
		data[i] ^= 0x5a
	}
	if _, err := store.PutBytes(ctx, corrupt, data, objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep := check(false); !rep.OK() {
		t.Fatalf("stat-only check saw a same-size corruption: %+v", rep.Problems)
	}
	// The bytes are in a block: the pack's name (the hash of its table)
	// still holds, the chunks there fail their hashes.
	rep := check(true)
	p := findProblem(rep, registry.ProblemCorruptChunk, corrupt)
	if p == nil || !strings.HasPrefix(p.Ref, "vm:") {
		t.Fatalf("no corrupt-chunk for %s: %+v", corrupt, rep.Problems)
	}
	// A byte of the table: the name no longer holds.
	data[len(data)-pack.FooterSize-1] ^= 0x5a
	if _, err := store.PutBytes(ctx, corrupt, data, objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rep = check(true)
	if p = findProblem(rep, registry.ProblemCorruptPack, corrupt); p == nil || !strings.HasPrefix(p.Ref, "vm:") {
		t.Fatalf("no corrupt-pack for %s: %+v", corrupt, rep.Problems)
	}

	// Delete the first pack.
	if err := store.Delete(ctx, packs[0]); err != nil {
		t.Fatal(err)
	}
	rep = check(false)
	if p := findProblem(rep, registry.ProblemMissingPack, packs[0]); p == nil || len(p.Refs) == 0 {
		t.Fatalf("no missing-pack for %s: %+v", packs[0], rep.Problems)
	}

	// Delete a recipe and a blob descriptor.
	recipes := storeKeys(t, store, "blobs/recipes/")
	if err := store.Delete(ctx, recipes[0]); err != nil {
		t.Fatal(err)
	}
	descs := storeKeys(t, store, "blobs/chunked/")
	if err := store.Delete(ctx, descs[0]); err != nil {
		t.Fatal(err)
	}
	rep = check(false)
	if findProblem(rep, registry.ProblemMissingRecipe, recipes[0]) == nil && findProblem(rep, registry.ProblemCorruptRecipe, "") == nil {
		t.Fatalf("no recipe problem for %s: %+v", recipes[0], rep.Problems)
	}
	if findProblem(rep, registry.ProblemMissingBlob, descs[0]) == nil {
		t.Fatalf("no missing-blob for %s: %+v", descs[0], rep.Problems)
	}

	// A broken manifest, and a catalog tag without its manifest.
	if _, err := store.PutBytes(ctx, "manifests/vm/v1.json", []byte("{"), objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, "manifests/vm/v2.json"); err != nil {
		t.Fatal(err)
	}
	rep = check(false)
	if findProblem(rep, registry.ProblemCorruptManifest, "manifests/vm/v1.json") == nil ||
		findProblem(rep, registry.ProblemMissingManifest, "manifests/vm/v2.json") == nil {
		t.Fatalf("manifest problems not found: %+v", rep.Problems)
	}
}
