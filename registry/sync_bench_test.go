package registry_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// BenchmarkSyncIndex_ColdNode measures a node's first index sync against a
// store holding many index objects (a 256 MiB push in 1 MiB packs: each
// pack writes one), as a new node joining a long-lived store does before
// its first pull.
func BenchmarkSyncIndex_ColdNode(b *testing.B) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(b) {
		b.Run(name, func(b *testing.B) {
			pusher := registry.New(store, registry.WithCacheDir(b.TempDir()), registry.WithPackSize(1<<20))
			defer pusher.Close()
			src := filepath.Join(b.TempDir(), "memory")
			writeImage(b, src, 64<<10, 7)
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
