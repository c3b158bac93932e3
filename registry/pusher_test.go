package registry_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPushBlob_DigestSources checks the three ways a push gets a file's
// SHA-256 (hashing as it reads, reading the file back once chunks the
// store lacks show up late, or the digest the node remembers for content
// it has hashed before): each gives the file's true digest.
func TestPushBlob_DigestSources(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			orig := filepath.Join(dir, "memory-ranges")
			// 2048 pages: several 2 MiB batches, so a change in the last
			// pages starts the hasher well into the file.
			writeImage(t, orig, 2048, 11)
			r1, r2 := newRegistry(t, store), newRegistry(t, store)
			steps := []struct {
				name       string
				make       func(path string)
				push       func(context.Context, string) (string, bool, error)
				remembered bool
			}{
				{"first push", func(p string) { copyFile(t, orig, p) }, r1.PushBlobRemembered, false},
				{"same content, new file", func(p string) { copyFile(t, orig, p) }, r1.PushBlobRemembered, true},
				{"same content, another node", func(p string) { copyFile(t, orig, p) }, r2.PushBlobRemembered, false},
				{"same content, another node again", func(p string) { copyFile(t, orig, p) }, r2.PushBlobRemembered, true},
				{"new pages at the end", func(p string) {
					copyFile(t, orig, p)
					f, err := os.OpenFile(p, os.O_RDWR, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					buf := make([]byte, 16*page)
					for i := range buf {
						buf[i] = byte(i*7 + i/page)
					}
					if _, err := f.WriteAt(buf, 2000*page); err != nil {
						t.Fatal(err)
					}
				}, r1.PushBlobRemembered, false},
			}
			for i, s := range steps {
				path := filepath.Join(dir, "v"+string(rune('0'+i)), "memory-ranges")
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				s.make(path)
				digest, remembered, err := s.push(ctx, path)
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if want := fileDigest(t, path); digest != want {
					t.Fatalf("%s: digest %s, want %s", s.name, digest, want)
				}
				if remembered != s.remembered {
					t.Errorf("%s: digest remembered = %v, want %v", s.name, remembered, s.remembered)
				}
				out := filepath.Join(dir, "out"+string(rune('0'+i)))
				if err := newRegistry(t, store).PullBlob(ctx, digest, out); err != nil {
					t.Fatalf("%s: pull: %v", s.name, err)
				}
				sameFile(t, path, out)
			}
			// The sparse original on a node that has not hashed it: its
			// chunks are known, so it is read back, holes as zeros.
			digest, remembered, err := newRegistry(t, store).PushBlobRemembered(ctx, orig)
			if err != nil || digest != fileDigest(t, orig) || remembered {
				t.Fatalf("push of the sparse original = %s, remembered %v, %v", digest, remembered, err)
			}
			// A node that pulled the content verified its digest: pushing
			// it again from a copy needs no hashing either.
			r3 := newRegistry(t, store)
			pulled := filepath.Join(dir, "pulled")
			if err := r3.PullBlob(ctx, fileDigest(t, orig), pulled); err != nil {
				t.Fatal(err)
			}
			again := filepath.Join(dir, "again", "memory-ranges")
			if err := os.MkdirAll(filepath.Dir(again), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, pulled, again)
			digest, remembered, err = r3.PushBlobRemembered(ctx, again)
			if err != nil || digest != fileDigest(t, orig) || !remembered {
				t.Fatalf("push of pulled content = %s, remembered %v, %v", digest, remembered, err)
			}
		})
	}
}

// TestPushBlobFromStream_Digest checks that a stream, hashed once on its
// way into the spool, is stored under its digest and that the node then
// knows that digest for the content: a push of the same bytes from a file
// is not hashed.
func TestPushBlobFromStream_Digest(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// Named as no Cocoon file is, so it gets the chunker the
			// spooled stream gets (a recipe's key depends on the cut).
			src := filepath.Join(dir, "blob.bin")
			writeImage(t, src, 700, 21)
			digest := fileDigest(t, src)
			fi, err := os.Stat(src)
			if err != nil {
				t.Fatal(err)
			}
			in, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			r := newRegistry(t, store)
			if err := r.PushBlobFromStream(ctx, digest, in, fi.Size()); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			if err := newRegistry(t, store).PullBlob(ctx, digest, out); err != nil {
				t.Fatal(err)
			}
			sameFile(t, src, out)
			got, remembered, err := r.PushBlobRemembered(ctx, src)
			if err != nil || got != digest || !remembered {
				t.Fatalf("push of the streamed content from a file = %s, remembered %v, %v; want %s, true", got, remembered, err, digest)
			}
		})
	}
}

// TestPushBlob_SpooledRecipe pushes a memory file whose recipe is encoded
// into a spool file, as a multi-GiB one's is, and checks that it reads
// back, sits in the recipe cache, and that no spool file is left behind.
func TestPushBlob_SpooledRecipe(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			dir, cache := t.TempDir(), t.TempDir()
			src := filepath.Join(dir, "memory-ranges")
			writeImage(t, src, 512, 5)
			r := registry.New(store, registry.WithCacheDir(cache))
			t.Cleanup(func() { _ = r.Close() })
			r.SpoolRecipesFrom(1)
			digest, _, err := r.PushBlob(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			// Again: the object exists, the spool is dropped.
			if again, _, err := r.PushBlob(ctx, src); err != nil || again != digest {
				t.Fatalf("second push: %s, %v", again, err)
			}
			dst := filepath.Join(dir, "pulled")
			if err := newRegistry(t, store).PullBlob(ctx, digest, dst); err != nil {
				t.Fatal(err)
			}
			sameFile(t, src, dst)
			var spools, cached int
			err = filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
				switch {
				case err != nil:
					return err
				case strings.HasSuffix(p, ".spool"):
					spools++
				case !d.IsDir() && filepath.Base(filepath.Dir(filepath.Dir(p))) == "recipes":
					cached++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if spools != 0 || cached != 1 {
				t.Errorf("cache holds %d spool files and %d recipes, want 0 and 1", spools, cached)
			}
		})
	}
}

// TestRegistry_RemovesStaleSpools: a killed push leaves its named spool
// files in the cache folder; the next registry to open that folder removes
// those older than a day, and nothing else.
func TestRegistry_RemovesStaleSpools(t *testing.T) {
	cache := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	files := map[string]bool{ // name -> removed
		"spool-123":          true,
		"recipe-456.spool":   true,
		"spool-running":      false, // written just now: a push in flight
		"notes.txt":          false,
		"index-unrelated.db": false,
	}
	for name := range files {
		p := filepath.Join(cache, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != "spool-running" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := objectstoretest.Stores(t)["local"]
	r := registry.New(store, registry.WithCacheDir(cache))
	t.Cleanup(func() { _ = r.Close() })
	src := filepath.Join(t.TempDir(), "memory-ranges")
	writeImage(t, src, 4, 1)
	if _, _, err := r.PushBlob(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(cache, name))
		if gone := errors.Is(err, fs.ErrNotExist); gone != removed {
			t.Errorf("%s: removed %v, want %v", name, gone, removed)
		}
	}
}
