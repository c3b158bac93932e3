package registry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// pushedManifest pushes a one-file blob and returns a manifest naming it.
func pushedManifest(t *testing.T, r *registry.Registry, name, tag string) *manifest.Manifest {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"name":"`+name+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	digest, size, err := r.PushBlob(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return &manifest.Manifest{
		SchemaVersion: 1, Name: name, Tag: tag, SnapshotID: "01hx3k9q2m7v5r8t4w6y0z1a2b",
		Layers: []manifest.Layer{{
			Digest: digest, Size: size, Filename: "config.json",
			MediaType: manifest.MediaTypeFor("config.json"),
		}},
		TotalSize: size, CreatedAt: time.Now().UTC(),
	}
}

func TestManifest_PushPullList(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			for _, ref := range [][2]string{{"vm", "latest"}, {"vm", "hibernate"}, {"vm/child", "latest"}, {"other", "v1"}} {
				if err := r.PushManifest(ctx, pushedManifest(t, r, ref[0], ref[1])); err != nil {
					t.Fatalf("PushManifest %v: %v", ref, err)
				}
			}
			m, err := r.PullManifest(ctx, "vm", "hibernate")
			if err != nil || m.Tag != "hibernate" || len(m.Layers) != 1 {
				t.Fatalf("PullManifest = %+v, %v", m, err)
			}
			raw, err := r.ManifestJSON(ctx, "vm", "hibernate")
			if err != nil {
				t.Fatal(err)
			}
			byDigest, err := r.PullManifest(ctx, "vm", "sha256:"+manifest.Digest(raw))
			if err != nil || byDigest.Tag != "hibernate" {
				t.Fatalf("manifest by digest = %+v, %v", byDigest, err)
			}
			tags, err := r.ListTags(ctx, "vm")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tags, []string{"hibernate", "latest"}) {
				t.Fatalf("ListTags(vm) = %v: nested repository leaked or tag missing", tags)
			}
			cat, err := r.GetCatalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, repo := range []string{"vm", "vm/child", "other"} {
				if cat.Repositories[repo] == nil {
					t.Errorf("catalog lacks %s", repo)
				}
			}
			if err := r.DeleteManifest(ctx, "vm", "latest"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.PullManifest(ctx, "vm", "latest"); !errors.Is(err, registry.ErrManifestNotFound) {
				t.Fatalf("pull deleted manifest: %v", err)
			}
			if err := r.DeleteManifest(ctx, "vm", "latest"); !errors.Is(err, registry.ErrManifestNotFound) {
				t.Fatalf("delete missing manifest: %v", err)
			}
			cat, _ = r.GetCatalog(ctx)
			if _, ok := cat.Repositories["vm"].Tags["latest"]; ok {
				t.Error("catalog still lists vm:latest")
			}
		})
	}
}

func TestManifest_BadInput(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	good := pushedManifest(t, r, "vm", "latest")
	goodJSON, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, repo, tag string
		data            []byte
	}{
		{"malformed json", "vm", "latest", []byte(`{"schemaVersion": 1, "name": "vm"`)},
		{"dotdot name", "../etc", "latest", goodJSON},
		{"absolute name", "/vm", "latest", goodJSON},
		{"empty part", "vm//x", "latest", goodJSON},
		{"long part", string(make([]byte, 300)), "latest", goodJSON},
		{"bad tag", "vm", "../x", goodJSON},
		{"empty tag", "vm", "", goodJSON},
		{"name mismatch", "other", "latest", goodJSON},
		{"traversal filename", "vm", "latest", []byte(`{"schemaVersion":1,"name":"vm","tag":"latest","layers":[{"digest":"` +
			good.Layers[0].Digest + `","size":1,"filename":"../../etc/passwd","mediaType":"x"}]}`)},
		{"missing blob", "vm", "latest", []byte(`{"schemaVersion":1,"name":"vm","tag":"latest","layers":[{"digest":"` +
			"0000000000000000000000000000000000000000000000000000000000000000" + `","size":1,"filename":"mem","mediaType":"x"}]}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.PushManifestJSON(ctx, tc.repo, tc.tag, tc.data); err == nil {
				t.Fatal("accepted")
			}
			var keys []string
			_ = store.List(ctx, "manifests/", func(oi objectstore.ObjectInfo) error {
				keys = append(keys, oi.Key)
				return nil
			})
			if len(keys) != 0 {
				t.Fatalf("bad manifest wrote %v", keys)
			}
		})
	}
	for _, ref := range [][2]string{{"../x", "latest"}, {"vm", "a/b"}, {"", "latest"}} {
		if _, err := r.PullManifest(ctx, ref[0], ref[1]); err == nil || errors.Is(err, registry.ErrManifestNotFound) {
			t.Errorf("PullManifest(%q, %q) = %v, want a validation error", ref[0], ref[1], err)
		}
	}
}

// TestCatalog_ConcurrentWriters pushes 16 tags at once from 16 registries
// (16 nodes): every tag must be in the catalog afterwards.
func TestCatalog_ConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			const writers = 16
			ms := make([]*manifest.Manifest, writers)
			regs := make([]*registry.Registry, writers)
			for i := range writers {
				regs[i] = newRegistry(t, store)
				ms[i] = pushedManifest(t, regs[i], "vm", fmt.Sprintf("t%02d", i))
			}
			var wg sync.WaitGroup
			errs := make([]error, writers)
			for i := range writers {
				wg.Go(func() { errs[i] = regs[i].PushManifest(ctx, ms[i]) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("writer %d: %v", i, err)
				}
			}
			cat, err := regs[0].GetCatalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(cat.Repositories["vm"].Tags); got != writers {
				t.Fatalf("catalog has %d tags, want %d: %v", got, writers, cat.Repositories["vm"].Tags)
			}
		})
	}
}
