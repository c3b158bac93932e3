package registry_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// onFirstPackGet runs hook once, before the first pack read, while every
// other read waits: a gc that finishes between a pull's index sync and its
// downloads, on top of the real backend.
type onFirstPackGet struct {
	objectstore.Backend
	once sync.Once
	hook func()
}

func (b *onFirstPackGet) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.Contains(key, "blobs/packs/") {
		b.once.Do(b.hook)
	}
	return b.Backend.Get(ctx, key, off, n)
}

// TestPull_PackDeletedMidPull: a node syncs its index, then gc rewrites the
// live chunks of a pack and deletes it before the node reads it. The pull
// re-syncs once, finds the chunks in the rewritten pack and completes.
func TestPull_PackDeletedMidPull(t *testing.T) {
	ctx := context.Background()
	for _, rs := range rawStores(t) {
		t.Run(rs.name, func(t *testing.T) {
			store := rs.plain
			pusher := newRegistry(t, store)
			dir := memDir(t, 512, 5)
			if _, _, err := pusher.PushDir(ctx, dir, "vm", "v1", nil); err != nil {
				t.Fatal(err)
			}
			rewritePages(t, filepath.Join(dir, "memory-ranges"), 800, 6)
			if _, _, err := pusher.PushDir(ctx, dir, "vm", "v2", nil); err != nil {
				t.Fatal(err)
			}
			if err := pusher.DeleteManifest(ctx, "vm", "v1"); err != nil {
				t.Fatal(err)
			}
			dropDigest(t, store, pusher, "vm", "v1", dir)

			gc := newRegistry(t, store)
			// The hook runs on a pull worker: it reports, never t.Fatal.
			var deleted int
			var gcErr error
			ran := false
			hooked := &onFirstPackGet{Backend: rs.backend, hook: func() {
				ran = true
				for _, ahead := range []time.Duration{2 * time.Hour, 4 * time.Hour} {
					at := time.Now().Add(ahead)
					rep, err := gc.GC(ctx, registry.GCOptions{Now: func() time.Time { return at }})
					if err != nil {
						gcErr = err
						return
					}
					deleted += rep.PacksDeleted
				}
			}}
			reader := newRegistry(t, objectstore.NewFromBackend(hooked, rs.prefix))
			out := t.TempDir()
			if _, _, err := reader.PullDir(ctx, "vm", "v2", out, nil); err != nil {
				t.Fatalf("pull while gc deleted a pack: %v", err)
			}
			if !ran || gcErr != nil || deleted != 1 {
				t.Fatalf("gc under the pull: ran %v, %d packs deleted (want 1), error %v", ran, deleted, gcErr)
			}
			sameFile(t, filepath.Join(dir, "memory-ranges"), filepath.Join(out, "memory-ranges"))
			checkClean(t, store)
		})
	}
}
