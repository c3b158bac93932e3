package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
)

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			pushDirRevisions(t, r, "vm")
			pushDirRevisions(t, r, "other")
			st, err := r.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m1, err := r.PullManifest(ctx, "vm", "v1")
			if err != nil {
				t.Fatal(err)
			}
			if st.Tags != 4 || len(st.Repositories) != 2 || st.Repositories[0].Name != "other" || st.Repositories[1].Tags != 2 {
				t.Fatalf("stats %+v", st)
			}
			if st.RawBytes != 4*m1.TotalSize {
				t.Fatalf("raw %d, want %d", st.RawBytes, 4*m1.TotalSize)
			}
			if st.Packs == 0 || st.PackBytes == 0 || st.Recipes == 0 || st.IndexObjects == 0 || st.Chunks == 0 {
				t.Fatalf("stats %+v", st)
			}
			if st.StoredBytes != st.PackBytes+st.RecipeBytes+st.IndexBytes+st.MetadataBytes+st.LegacyBytes || st.DedupRatio <= 1 {
				t.Fatalf("stored %d, ratio %v: %+v", st.StoredBytes, st.DedupRatio, st)
			}
		})
	}
}

func TestLayerStats(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	pushDirRevisions(t, r, "vm")
	m, err := r.PullManifest(ctx, "vm", "v2")
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.ManifestStats(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Layers) != 3 || info.RawBytes != m.TotalSize || info.UniqueBytes == 0 || info.DedupRatio <= 1 {
		t.Fatalf("manifest stats %+v", info)
	}
	for _, l := range info.Layers {
		if l.Recipe == "" || l.Chunks == 0 || l.Chunker == "" || l.Size != l.ZeroBytes+l.DataBytes {
			t.Fatalf("layer %+v", l)
		}
		if l.Filename == "memory-ranges" {
			if l.ZeroBytes == 0 {
				t.Fatalf("memory-ranges without zero bytes: %+v", l)
			}
			// v2 rewrote a few pages of v1's memory: a patch recipe.
			if l.RecipeKind != "patch" || l.ChainDepth != 1 {
				t.Logf("memory-ranges recipe %s depth %d (a full recipe is allowed when smaller)", l.RecipeKind, l.ChainDepth)
			}
		}
	}
	legacy, err := r.LayerStats(ctx, m.Layers[0])
	if err != nil || legacy.Filename != m.Layers[0].Filename {
		t.Fatalf("layer stats %+v, %v", legacy, err)
	}
}
