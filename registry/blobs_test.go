package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

const page = 4096

// newRegistry returns a registry with its own node index, as if on its own
// machine.
func newRegistry(t *testing.T, store *objectstore.Client) *registry.Registry {
	t.Helper()
	r := registry.New(store, registry.WithCacheDir(t.TempDir()))
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// writeImage writes a memory-like file: pages random, compressible or zero
// (left as holes), chosen by seed.
func writeImage(t testing.TB, path string, pages int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, page)
	for i := range pages {
		switch rng.IntN(3) {
		case 0: // zero page: a hole
			continue
		case 1:
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		default:
			word := []byte("page " + string(rune('a'+rng.IntN(26))) + " ")
			for j := range buf {
				buf[j] = word[j%len(word)]
			}
		}
		if _, err := f.WriteAt(buf, int64(i)*page); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(pages) * page); err != nil {
		t.Fatal(err)
	}
}

// rewritePages overwrites n random pages of path with new random content.
func rewritePages(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := int(fi.Size() / page)
	rng := rand.New(rand.NewPCG(seed, 7))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, page)
	for range n {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, int64(rng.IntN(pages))*page); err != nil {
			t.Fatal(err)
		}
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatalf("%s and %s differ (%d vs %d bytes)", a, b, len(da), len(db))
	}
}

func TestBlob_RoundTrip(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "memory-ranges")
			writeImage(t, src, 600, 1)
			small := filepath.Join(dir, "config.json")
			if err := os.WriteFile(small, []byte(`{"cpu": 2}`), 0o644); err != nil {
				t.Fatal(err)
			}
			empty := filepath.Join(dir, "empty")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			pusher := newRegistry(t, store)
			for _, path := range []string{src, small, empty} {
				digest, size, err := pusher.PushBlob(ctx, path)
				if err != nil {
					t.Fatalf("PushBlob %s: %v", path, err)
				}
				if want := fileDigest(t, path); digest != want {
					t.Fatalf("digest %s, want %s", digest, want)
				}
				fi, _ := os.Stat(path)
				if size != fi.Size() {
					t.Fatalf("size %d, want %d", size, fi.Size())
				}

				// Another node pulls it.
				puller := newRegistry(t, store)
				ok, err := puller.BlobExists(ctx, digest)
				if err != nil || !ok {
					t.Fatalf("BlobExists = %v, %v", ok, err)
				}
				gotSize, err := puller.BlobSize(ctx, digest)
				if err != nil || gotSize != size {
					t.Fatalf("BlobSize = %d, %v; want %d", gotSize, err, size)
				}
				dst := filepath.Join(t.TempDir(), "out")
				if err := puller.PullBlob(ctx, digest, dst); err != nil {
					t.Fatalf("PullBlob: %v", err)
				}
				sameFile(t, path, dst)

				rc, n, err := puller.StreamBlob(ctx, digest)
				if err != nil {
					t.Fatalf("StreamBlob: %v", err)
				}
				streamed, err := io.ReadAll(rc)
				_ = rc.Close()
				if err != nil || int64(len(streamed)) != n || n != size {
					t.Fatalf("StreamBlob read %d of %d bytes: %v", len(streamed), n, err)
				}
			}

			digest, _, err := pusher.PushBlob(ctx, small)
			if err != nil {
				t.Fatal(err)
			}
			if err := pusher.DeleteBlob(ctx, digest); err != nil {
				t.Fatalf("DeleteBlob: %v", err)
			}
			if ok, err := pusher.BlobExists(ctx, digest); err != nil || ok {
				t.Fatalf("BlobExists after delete = %v, %v", ok, err)
			}
			err = pusher.PullBlob(ctx, digest, filepath.Join(dir, "gone"))
			if !errors.Is(err, registry.ErrBlobNotFound) {
				t.Fatalf("PullBlob of deleted blob: %v, want ErrBlobNotFound", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
				t.Fatalf("failed pull left a file: %v", err)
			}
		})
	}
}

func TestBlob_DedupSecondVersion(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory-ranges")
			writeImage(t, path, 2048, 2)
			r := newRegistry(t, store)
			if _, _, err := r.PushBlobStats(ctx, path, nil); err != nil {
				t.Fatal(err)
			}
			const changed = 20
			rewritePages(t, path, changed, 3)
			_, st, err := r.PushBlobStats(ctx, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.NewChunks > changed {
				t.Errorf("second push found %d new chunks, want <= %d", st.NewChunks, changed)
			}
			// Random pages do not compress: the floor is changed*page plus
			// metadata (a recipe of 2048 extents, a pack table, an index object).
			if limit := int64(changed*page)*3/2 + 96<<10; st.UploadedBytes > limit {
				t.Errorf("second push uploaded %d bytes, want <= %d", st.UploadedBytes, limit)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := newRegistry(t, store).PullBlob(ctx, fileDigest(t, path), dst); err != nil {
				t.Fatal(err)
			}
			sameFile(t, path, dst)
		})
	}
}

func TestPushBlobFromStream(t *testing.T) {
	ctx := context.Background()
	content := bytes.Repeat([]byte("stream me "), 10000)
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	other := sha256.Sum256([]byte("other"))
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			tests := []struct {
				name    string
				digest  string
				body    []byte
				size    int64
				wantErr error
			}{
				{"wrong digest", hex.EncodeToString(other[:]), content, int64(len(content)), registry.ErrDigestMismatch},
				{"short stream", digest, content[:100], int64(len(content)), registry.ErrSizeMismatch},
				{"long stream", digest, content, 100, registry.ErrSizeMismatch},
				{"bad digest", "sha256:xyz", content, int64(len(content)), registry.ErrInvalidDigest},
			}
			for _, tc := range tests {
				err := r.PushBlobFromStream(ctx, tc.digest, bytes.NewReader(tc.body), tc.size)
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
				}
				if d, err := hex.DecodeString(tc.digest); err == nil && len(d) == 32 {
					if ok, _ := r.BlobExists(ctx, tc.digest); ok {
						t.Errorf("%s: blob stored under %s", tc.name, tc.digest)
					}
				}
			}
			if err := r.PushBlobFromStream(ctx, digest, bytes.NewReader(content), int64(len(content))); err != nil {
				t.Fatalf("good stream: %v", err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := r.PullBlob(ctx, digest, dst); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) {
				t.Fatal("pulled stream differs")
			}
		})
	}
}

// TestPullBlob_CorruptPack flips bytes in every pack: the pull fails naming
// a pack and a chunk, and writes nothing at the destination.
func TestPullBlob_CorruptPack(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.raw")
			writeImage(t, path, 300, 4)
			digest, _, err := newRegistry(t, store).PushBlob(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			var packs []string
			err = store.List(ctx, "blobs/packs/", func(oi objectstore.ObjectInfo) error {
				packs = append(packs, oi.Key)
				return nil
			})
			if err != nil || len(packs) == 0 {
				t.Fatalf("list packs: %v (%d)", err, len(packs))
			}
			for _, key := range packs {
				data, _, err := store.GetBytes(ctx, key, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				for i := 64; i < len(data)-4096; i += 997 {
					data[i] ^= 0x5a
				}
				if _, err := store.PutBytes(ctx, key, data, objectstore.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			dst := filepath.Join(t.TempDir(), "out")
			err = newRegistry(t, store).PullBlob(ctx, digest, dst)
			if err == nil {
				t.Fatal("pull of a corrupt pack succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, "pack ") || !strings.Contains(msg, "chunk") {
				t.Errorf("error does not name the pack and chunk: %v", err)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("corrupt pull left %s: %v", dst, err)
			}
			entries, _ := os.ReadDir(filepath.Dir(dst))
			if len(entries) != 0 {
				t.Errorf("corrupt pull left files: %v", entries)
			}
		})
	}
}

// TestLegacyStore reads a store written by Epoch v0.1.x: whole blobs and
// manifests without recipes.
func TestLegacyStore(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			content := []byte("an epoch v0.1 blob\n")
			sum := sha256.Sum256(content)
			digest := hex.EncodeToString(sum[:])
			if _, err := store.PutBytes(ctx, "blobs/sha256/"+digest, content, objectstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			r := newRegistry(t, store)
			ok, err := r.BlobExists(ctx, digest)
			if err != nil || !ok {
				t.Fatalf("BlobExists(legacy) = %v, %v", ok, err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := r.PullBlob(ctx, digest, dst); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) {
				t.Fatal("legacy blob differs")
			}
			// A legacy blob whose bytes do not match its name is refused.
			bad := sha256.Sum256([]byte("not this"))
			badDigest := hex.EncodeToString(bad[:])
			if _, err := store.PutBytes(ctx, "blobs/sha256/"+badDigest, content, objectstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := r.PullBlob(ctx, badDigest, dst+"2"); !errors.Is(err, registry.ErrDigestMismatch) {
				t.Fatalf("corrupt legacy blob: %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// TestPullBlob_ColdNodeStagesIndex pulls, on a new node, blobs whose index
// objects are more than one sync batch and more entries than the node's
// merge threshold: the sync stages them and merges once (see
// index.DB.StageAll) before the pull looks its chunks up.
func TestPullBlob_ColdNodeStagesIndex(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pusher := newRegistry(t, store)
			var paths, digests []string
			for i := range 20 { // one index object each; a sync fetches 16 at a time
				path := filepath.Join(dir, fmt.Sprintf("memory-%d", i))
				writeImage(t, path, 96, uint64(100+i))
				digest, _, err := pusher.PushBlob(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				paths, digests = append(paths, path), append(digests, digest)
			}
			node := registry.New(store, registry.WithCacheDir(t.TempDir()))
			node.SetMergeThreshold(64)
			t.Cleanup(func() { _ = node.Close() })
			for i, digest := range digests {
				dst := filepath.Join(t.TempDir(), "out")
				if err := node.PullBlob(ctx, digest, dst); err != nil {
					t.Fatalf("PullBlob %d: %v", i, err)
				}
				sameFile(t, paths[i], dst)
			}
		})
	}
}

// TestPullBlob_Replaces pulls one blob over another at the same path, as a
// node moves to a new revision: the path holds the new content, and once
// the registry is closed (the previous file is removed in the background)
// nothing else is left in the folder.
func TestPullBlob_Replaces(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	src := t.TempDir()
	var digests [2]string
	for i := range digests {
		path := filepath.Join(src, fmt.Sprintf("v%d", i), "memory-ranges")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeImage(t, path, 200, uint64(10+i))
		d, _, err := newRegistry(t, store).PushBlob(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		digests[i] = d
	}
	dir := t.TempDir()
	dest := filepath.Join(dir, "memory-ranges")
	node := registry.New(store, registry.WithCacheDir(t.TempDir()))
	for _, d := range []string{digests[0], digests[1], digests[0]} {
		if err := node.PullBlob(ctx, d, dest); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d {
			t.Fatalf("%s holds sha256 %x, want %s", dest, sum, d)
		}
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "memory-ranges" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("folder holds %v, want only memory-ranges", names)
	}
}
