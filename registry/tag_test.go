package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func TestTag(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			pushDirRevisions(t, r, "vm")
			src, err := r.PullManifest(ctx, "vm", "v2")
			if err != nil {
				t.Fatal(err)
			}
			digest, err := r.TagDigest(ctx, "vm", "v2", "golden/web", "")
			if err != nil {
				t.Fatal(err)
			}
			data, err := r.ManifestJSON(ctx, "golden/web", "latest")
			if err != nil {
				t.Fatal(err)
			}
			dst, err := r.PullManifest(ctx, "golden/web", "latest")
			if err != nil {
				t.Fatal(err)
			}
			if dst.Name != "golden/web" || dst.Tag != "latest" || len(dst.Layers) != len(src.Layers) || dst.TotalSize != src.TotalSize {
				t.Fatalf("tagged manifest %+v", dst)
			}
			for i := range src.Layers {
				if src.Layers[i] != dst.Layers[i] {
					t.Fatalf("layer %d: %+v, want %+v", i, dst.Layers[i], src.Layers[i])
				}
			}
			if len(digest) != 64 || digest != digestOf(data) {
				t.Fatalf("digest %s", digest)
			}
			cat, err := r.GetCatalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if repo := cat.Repositories["golden/web"]; repo == nil || repo.Tags["latest"] != digest {
				t.Fatalf("catalog: %+v", cat.Repositories["golden/web"])
			}
			// By digest as the source, too.
			if err := r.Tag(ctx, "golden/web", "sha256:"+digest, "vm", "v9"); err != nil {
				t.Fatal(err)
			}
			if err := r.Tag(ctx, "vm", "nosuch", "vm", "x"); !errors.Is(err, registry.ErrManifestNotFound) {
				t.Fatalf("missing source: %v", err)
			}
			if err := r.Tag(ctx, "vm", "v2", "vm", "../x"); err == nil {
				t.Fatal("bad destination tag accepted")
			}
		})
	}
}
