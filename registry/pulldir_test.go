package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func TestPullDir_RoundTrip(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			src := pushDirRevisions(t, newRegistry(t, store), "files")
			if err := os.Chmod(filepath.Join(src, "config.json"), 0o600); err != nil {
				t.Fatal(err)
			}
			pusher := newRegistry(t, store)
			if _, _, err := pusher.PushDir(ctx, src, "files", "v3", nil); err != nil {
				t.Fatal(err)
			}
			// Another node pulls into a folder.
			r := newRegistry(t, store)
			out := filepath.Join(t.TempDir(), "out")
			var calls int
			m, st, err := r.PullDir(ctx, "files", "v3", out, func(registry.TransferStats) { calls++ })
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 3 || st.Files != 3 || st.RawBytes != m.TotalSize || st.DownloadedBytes == 0 || calls == 0 {
				t.Fatalf("manifest %d layers, stats %+v, %d progress calls", len(m.Layers), st, calls)
			}
			for _, l := range m.Layers {
				sameFile(t, filepath.Join(src, l.Filename), filepath.Join(out, l.Filename))
			}
			fi, err := os.Stat(filepath.Join(out, "config.json"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("config.json mode %v, %v", fi.Mode(), err)
			}
			// Pulling again reuses what is on disk.
			out2 := filepath.Join(t.TempDir(), "out2")
			_, st2, err := r.PullDir(ctx, "files", "v2", out2, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st2.ReusedBytes == 0 || st2.DownloadedBytes >= st.DownloadedBytes {
				t.Fatalf("second pull %+v, first %+v", st2, st)
			}
		})
	}
}

func TestPullDir_BadInput(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	out := filepath.Join(t.TempDir(), "out")
	if _, _, err := r.PullDir(ctx, "nosuch", "", out, nil); !errors.Is(err, registry.ErrManifestNotFound) {
		t.Fatalf("missing manifest: %v", err)
	}
	if _, _, err := r.PullDir(ctx, "x", "../y", out, nil); err == nil {
		t.Fatal("bad tag accepted")
	}
	// A manifest whose file name would leave the folder.
	evil := `{"schemaVersion":1,"name":"evil","tag":"latest","snapshotId":"","image":"",` +
		`"layers":[{"digest":"` + zeros64 + `","size":1,"filename":"../escape","mediaType":"x"}],` +
		`"totalSize":1,"createdAt":"2026-01-01T00:00:00Z","pushedAt":"2026-01-01T00:00:00Z"}`
	if _, err := store.PutBytes(ctx, "manifests/evil/latest.json", []byte(evil), objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PullDir(ctx, "evil", "latest", out, nil); err == nil {
		t.Fatal("manifest with ../escape accepted")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file escaped the folder: %v", err)
	}
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"
