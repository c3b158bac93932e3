package registry_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// BenchmarkSyncIndex_ColdNode measures a node's first index sync against a
// store holding many index objects (a push in 1 MiB packs: each pack
// writes one), as a new node joining a long-lived store does before its
// first pull. The small store's entries fit below the registry's merge
// threshold and are served from memory; the large one's are merged.
func BenchmarkSyncIndex_ColdNode(b *testing.B) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(b) {
		for _, size := range []struct {
			name  string
			pages int
		}{{"256MiB", 64 << 10}, {"1GiB", 256 << 10}} {
			b.Run(name+"/"+size.name, func(b *testing.B) {
				pusher := registry.New(store, registry.WithCacheDir(b.TempDir()), registry.WithPackSize(1<<20))
				defer pusher.Close()
				src := filepath.Join(b.TempDir(), "memory")
				writeImage(b, src, size.pages, 7)
				if _, _, err := pusher.PushBlob(ctx, src); err != nil {
					b.Fatal(err)
				}
				objects := len(storeKeys(b, store, "blobs/index/"))
				for b.Loop() {
					node := registry.New(store, registry.WithCacheDir(b.TempDir()))
					if err := node.SyncIndex(ctx); err != nil {
						b.Fatal(err)
					}
					_ = node.Close()
				}
				b.ReportMetric(float64(objects), "objects")
			})
		}
	}
}
