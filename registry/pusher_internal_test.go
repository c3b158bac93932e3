package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// TestFileDigest_ReadBack checks the digest of a file read back from disk
// (its chunks were all known, its content not): right while the file is as
// it was opened, refused once it changed, and remembered only when right.
func TestFileDigest_ReadBack(t *testing.T) {
	ctx := context.Background()
	r, _ := initRegistry(t)
	tests := []struct {
		name    string
		change  func(path string)
		wantErr string
	}{
		{"unchanged", func(string) {}, ""},
		{"rewritten", func(path string) {
			if err := os.WriteFile(path, []byte("other bytes, same length!"), 0o644); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(path, later, later); err != nil {
				t.Fatal(err)
			}
		}, "file changed while it was read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := []byte("the bytes that were chunked")
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			tt.change(path)
			// A recipe of its own per case: its content key is unknown.
			recipe := &manifest.Recipe{}
			recipe.AppendData(sha256.Sum256([]byte(tt.name)), uint32(len(content)))
			p := r.newPusher(ctx, nil)
			defer func() { _ = p.finish() }()
			digest, remembered, err := p.fileDigest(newFileHash(f, []chunk.Region{{Length: fi.Size()}}), recipe, recipe.ContentKey(), fi)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if _, ok, _ := r.idx.KnownDigest(recipe.ContentKey()); ok {
					t.Fatal("digest of a changed file remembered")
				}
				return
			}
			sum := sha256.Sum256(content)
			if err != nil || remembered || digest != hex.EncodeToString(sum[:]) {
				t.Fatalf("fileDigest = %s, %v, %v; want %x", digest, remembered, err, sum)
			}
			if d, ok, _ := r.idx.KnownDigest(recipe.ContentKey()); !ok || d != sum {
				t.Fatal("digest not remembered")
			}
		})
	}
}

// TestStoreRecipe_Remembered checks that a recipe stored in full is
// remembered by its content key and named again without encoding it, and
// that a remembered object the store no longer holds is stored again.
func TestStoreRecipe_Remembered(t *testing.T) {
	ctx := context.Background()
	r, store := initRegistry(t)
	recipe := &manifest.Recipe{}
	recipe.AppendData(chunk.Sum([]byte("a page")), 4096)
	recipe.AppendZero(1 << 20)
	recipe.AppendData(chunk.Sum([]byte("another page")), 4096)
	id, err := r.storeRecipe(ctx, recipe, recipe.ContentKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if known, ok, err := r.idx.KnownRecipe(recipe.ContentKey()); err != nil || !ok || known != id {
		t.Fatalf("KnownRecipe = %s, %v, %v; want %s", known, ok, err, id)
	}
	// A remembered id is taken as it is: point the key at another stored
	// object and the next store names that one.
	other := &manifest.Recipe{}
	other.AppendZero(4096)
	otherID, err := r.storeRecipe(ctx, other, other.ContentKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.idx.RememberRecipe(recipe.ContentKey(), otherID); err != nil {
		t.Fatal(err)
	}
	if got, err := r.storeRecipe(ctx, recipe, recipe.ContentKey(), nil); err != nil || got != otherID {
		t.Fatalf("store of a remembered recipe = %s, %v; want the remembered %s", got, err, otherID)
	}
	// Gone from the store (a gc removed it): encoded and stored again.
	if err := r.idx.RememberRecipe(recipe.ContentKey(), id); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, recipeKey(id)); err != nil {
		t.Fatal(err)
	}
	if got, err := r.storeRecipe(ctx, recipe, recipe.ContentKey(), nil); err != nil || got != id {
		t.Fatalf("store after the object was removed = %s, %v; want %s", got, err, id)
	}
	if _, err := store.Stat(ctx, recipeKey(id)); err != nil {
		t.Fatalf("recipe not stored again: %v", err)
	}
}

// initRegistry returns an initialised registry on a new folder store.
func initRegistry(t *testing.T) (*Registry, *objectstore.Client) {
	t.Helper()
	dir := t.TempDir()
	store, err := objectstore.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(store, WithCacheDir(filepath.Join(dir, "cache")))
	t.Cleanup(func() { _ = r.Close() })
	if err := r.init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, store
}
