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
	dir := t.TempDir()
	store, err := objectstore.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(store, WithCacheDir(filepath.Join(dir, "cache")))
	t.Cleanup(func() { _ = r.Close() })
	if err := r.init(ctx); err != nil {
		t.Fatal(err)
	}
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
			digest, remembered, err := p.fileDigest(newFileHash(f, []chunk.Region{{Length: fi.Size()}}), recipe, fi)
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
