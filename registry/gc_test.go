package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// gcAt runs GC with its clock at now+ahead: object ages come from the
// store's clock, so a future Now stands in for waiting.
func gcAt(t *testing.T, r *registry.Registry, ahead time.Duration, opts registry.GCOptions) *registry.GCReport {
	t.Helper()
	at := time.Now().Add(ahead)
	opts.Now = func() time.Time { return at }
	rep, err := r.GC(context.Background(), opts)
	if err != nil {
		t.Fatalf("GC at +%v: %v", ahead, err)
	}
	return rep
}

// checkClean runs a full check (every pack read) from a fresh node.
func checkClean(t *testing.T, store *objectstore.Client) {
	t.Helper()
	rep, err := newRegistry(t, store).Check(context.Background(), registry.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("check found problems: %+v", rep.Problems)
	}
}

func countKeys(t *testing.T, store *objectstore.Client, prefix string) int {
	t.Helper()
	n := 0
	if err := store.List(context.Background(), prefix, func(objectstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// dropRepo deletes every manifest of a repository, by tag and by digest.
func dropRepo(t *testing.T, store *objectstore.Client, r *registry.Registry, name string) {
	t.Helper()
	ctx := context.Background()
	tags, err := r.ListTags(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		if err := r.DeleteManifest(ctx, name, tag); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	_ = store.List(ctx, "manifests/"+name+"/", func(oi objectstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	for _, k := range keys {
		if err := store.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}

func memDir(t *testing.T, pages int, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "memory-ranges"), pages, seed)
	return dir
}

// pullSame pulls name:tag with a fresh node and compares it with dir.
func pullSame(t *testing.T, store *objectstore.Client, name, tag, dir string) {
	t.Helper()
	out := t.TempDir()
	if _, _, err := newRegistry(t, store).PullDir(context.Background(), name, tag, out, nil); err != nil {
		t.Fatalf("pull %s:%s: %v", name, tag, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		sameFile(t, filepath.Join(dir, e.Name()), filepath.Join(out, e.Name()))
	}
}

func TestGC_Unreferenced(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			keep := memDir(t, 256, 1)
			if _, _, err := r.PushDir(ctx, keep, "keep", "v1", nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.PushDir(ctx, memDir(t, 256, 9), "drop", "v1", nil); err != nil {
				t.Fatal(err)
			}
			dropRepo(t, store, r, "drop")
			packs := countKeys(t, store, "blobs/packs/")

			// Nothing is older than the grace period yet.
			if rep := gcAt(t, r, 0, registry.GCOptions{}); rep.PacksCondemned+rep.RecipesCondemned+rep.DescriptorsCondemned != 0 || rep.Plan != "" {
				t.Fatalf("young objects condemned: %+v", rep)
			}
			rep := gcAt(t, r, 2*time.Hour, registry.GCOptions{})
			if rep.PacksCondemned != 1 || rep.RecipesCondemned != 1 || rep.DescriptorsCondemned != 1 || rep.PacksDeleted != 0 || rep.Plan == "" {
				t.Fatalf("first run: %+v", rep)
			}
			checkClean(t, store)
			if got := countKeys(t, store, "blobs/packs/"); got != packs {
				t.Fatalf("condemning deleted packs: %d -> %d", packs, got)
			}
			rep = gcAt(t, r, 4*time.Hour, registry.GCOptions{})
			if rep.PacksDeleted != 1 || rep.RecipesDeleted != 1 || rep.DescriptorsDeleted != 1 || rep.PlansExecuted != 1 || rep.Tombstone == "" {
				t.Fatalf("second run: %+v", rep)
			}
			if rep.BytesAfter >= rep.BytesBefore || rep.LiveBytes == 0 {
				t.Fatalf("bytes: %+v", rep)
			}
			if got := countKeys(t, store, "blobs/packs/"); got != packs-1 {
				t.Fatalf("packs %d -> %d, want one deleted", packs, got)
			}
			if countKeys(t, store, "gc/plans/") != 0 || countKeys(t, store, "gc/deleted/") != 1 {
				t.Fatalf("plan not removed or tombstone missing: plans %d tombs %d %+v", countKeys(t, store, "gc/plans/"), countKeys(t, store, "gc/deleted/"), rep)
			}
			checkClean(t, store)
			pullSame(t, store, "keep", "v1", keep)
			// The pusher's own index (which located the deleted pack) still
			// serves a push of the kept content.
			if _, _, err := r.PushDir(ctx, keep, "keep", "v2", nil); err != nil {
				t.Fatal(err)
			}
			rep = gcAt(t, r, 6*time.Hour, registry.GCOptions{})
			if rep.PacksCondemned+rep.PacksDeleted+rep.RecipesCondemned+rep.DescriptorsCondemned != 0 {
				t.Fatalf("third run found work: %+v", rep)
			}
			checkClean(t, store)
		})
	}
}

// TestGC_KeepLast pushes 5 revisions, a quarter of the pages changing
// each time, and keeps the last 2.
func TestGC_KeepLast(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithPackSize(1<<20))
			t.Cleanup(func() { _ = r.Close() })
			dir := memDir(t, 1024, 3)
			saved := map[string]string{}
			for i := 1; i <= 5; i++ {
				if i > 1 {
					rewritePages(t, filepath.Join(dir, "memory-ranges"), 256, uint64(i))
				}
				tag := fmt.Sprintf("r%d", i)
				if _, _, err := r.PushDir(ctx, dir, "vm", tag, nil); err != nil {
					t.Fatal(err)
				}
				cp := t.TempDir()
				data, _ := os.ReadFile(filepath.Join(dir, "memory-ranges"))
				if err := os.WriteFile(filepath.Join(cp, "memory-ranges"), data, 0o644); err != nil {
					t.Fatal(err)
				}
				saved[tag] = cp
			}
			dry := gcAt(t, r, 2*time.Hour, registry.GCOptions{KeepLast: 2, DryRun: true})
			first := gcAt(t, r, 2*time.Hour, registry.GCOptions{KeepLast: 2})
			if first.ManifestsDeleted != 3 || first.TagsDeleted != 3 || first.PacksCondemned == 0 {
				t.Fatalf("first run: %+v", first)
			}
			if dry.ManifestsDeleted != 3 || dry.PacksCondemned != first.PacksCondemned {
				t.Fatalf("dry run %+v differs from the real one %+v", dry, first)
			}
			tags, _ := r.ListTags(ctx, "vm")
			if !slices.Equal(tags, []string{"r4", "r5"}) {
				t.Fatalf("tags after retention: %v", tags)
			}
			if n := countKeys(t, store, "manifests/vm/_digests/"); n != 2 {
				t.Fatalf("%d digest manifests, want 2", n)
			}
			cat, _ := r.GetCatalog(ctx)
			if got := len(cat.Repositories["vm"].Tags); got != 2 {
				t.Fatalf("catalog lists %d tags", got)
			}
			checkClean(t, store)
			second := gcAt(t, r, 4*time.Hour, registry.GCOptions{KeepLast: 2})
			if second.PacksDeleted == 0 || second.RecipesDeleted == 0 || second.DescriptorsDeleted == 0 {
				t.Fatalf("second run: %+v", second)
			}
			third := gcAt(t, r, 6*time.Hour, registry.GCOptions{KeepLast: 2})
			t.Logf("keep-last 2 of 5: packs %d, pack bytes %d -> %d (run 2) -> %d (run 3); live raw %d; stored/live %.2f -> %.2f; rewritten %d+%d",
				first.Packs, first.BytesBefore, second.BytesAfter, third.BytesAfter, second.LiveBytes,
				float64(first.BytesBefore)/float64(second.LiveBytes), float64(third.BytesAfter)/float64(third.LiveBytes),
				first.PacksRewritten, second.PacksRewritten)
			checkClean(t, store)
			pullSame(t, store, "vm", "r4", saved["r4"])
			pullSame(t, store, "vm", "r5", saved["r5"])
			if _, err := r.PullManifest(ctx, "vm", "r3"); !errors.Is(err, registry.ErrManifestNotFound) {
				t.Fatalf("r3 still there: %v", err)
			}
		})
	}
}

func TestGC_KeepTags(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	dir := memDir(t, 64, 4)
	for i := 1; i <= 4; i++ {
		rewritePages(t, filepath.Join(dir, "memory-ranges"), 8, uint64(i))
		if _, _, err := r.PushDir(ctx, dir, "vm", fmt.Sprintf("rel-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	rep := gcAt(t, r, 2*time.Hour, registry.GCOptions{KeepLast: 1, KeepTags: []string{"vm:rel-1"}})
	if rep.ManifestsDeleted != 2 {
		t.Fatalf("report %+v", rep)
	}
	tags, _ := r.ListTags(ctx, "vm")
	if !slices.Equal(tags, []string{"rel-1", "rel-4"}) {
		t.Fatalf("tags %v", tags)
	}
	if _, err := r.GC(ctx, registry.GCOptions{KeepTags: []string{"["}}); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

// TestGC_Rewrite: a pack mostly dead is rewritten; a node whose index
// located chunks in it pulls through the copies after it is deleted.
func TestGC_Rewrite(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			pusher := newRegistry(t, store)
			dir := memDir(t, 512, 5)
			if _, _, err := pusher.PushDir(ctx, dir, "vm", "v1", nil); err != nil {
				t.Fatal(err)
			}
			rewritePages(t, filepath.Join(dir, "memory-ranges"), 800, 6)
			if _, _, err := pusher.PushDir(ctx, dir, "vm", "v2", nil); err != nil {
				t.Fatal(err)
			}
			old := storeKeys(t, store, "blobs/packs/")
			if len(old) != 2 {
				t.Fatalf("%d packs, want 2", len(old))
			}
			// A node that knows the store as it is now.
			reader := newRegistry(t, store)
			if _, err := reader.Check(ctx, registry.CheckOptions{}); err != nil {
				t.Fatal(err)
			}
			// v1 goes: its pack keeps only the pages v2 did not change.
			if err := pusher.DeleteManifest(ctx, "vm", "v1"); err != nil {
				t.Fatal(err)
			}
			dropDigest(t, store, pusher, "vm", "v1", dir)

			gc := newRegistry(t, store)
			rep := gcAt(t, gc, 2*time.Hour, registry.GCOptions{})
			if rep.PacksRewritten != 1 || rep.PacksWritten != 1 || rep.PacksCondemned != 1 || rep.BytesWritten == 0 {
				t.Fatalf("first run: %+v", rep)
			}
			checkClean(t, store)
			rep = gcAt(t, gc, 4*time.Hour, registry.GCOptions{})
			if rep.PacksDeleted != 1 {
				t.Fatalf("second run: %+v", rep)
			}
			after := storeKeys(t, store, "blobs/packs/")
			if len(after) != 2 || slices.Equal(after, old) {
				t.Fatalf("packs %v -> %v", old, after)
			}
			checkClean(t, store)
			out := t.TempDir()
			if _, _, err := reader.PullDir(ctx, "vm", "v2", out, nil); err != nil {
				t.Fatalf("pull on a node that knew the old pack: %v", err)
			}
			sameFile(t, filepath.Join(dir, "memory-ranges"), filepath.Join(out, "memory-ranges"))
		})
	}
}

// dropDigest deletes the digest manifest of the revision name:tag had
// (found through the catalog's history: the only digest manifest not
// named by a remaining tag).
func dropDigest(t *testing.T, store *objectstore.Client, r *registry.Registry, name, _ string, _ string) {
	t.Helper()
	ctx := context.Background()
	cat, err := r.GetCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	if repo := cat.Repositories[name]; repo != nil {
		for _, d := range repo.Tags {
			live["manifests/"+name+"/_digests/sha256-"+d+".json"] = true
		}
	}
	for _, k := range storeKeys(t, store, "manifests/"+name+"/_digests/") {
		if !live[k] {
			if err := store.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// writePlan writes a gc plan directly, created age ago.
func writePlan(t *testing.T, store *objectstore.Client, age time.Duration, packs, recipes []string) string {
	t.Helper()
	created := time.Now().Add(-age).UTC()
	data, _ := json.Marshal(map[string]any{"version": 1, "created": created, "packs": ids(packs), "recipes": ids(recipes)})
	key := fmt.Sprintf("gc/plans/%019d-test.json", created.UnixNano())
	if _, err := store.PutBytes(context.Background(), key, data, objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
	return key
}

// ids turns store keys into the IDs they end with.
func ids(keys []string) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k[strings.LastIndexByte(k, '/')+1:])
	}
	return out
}

// TestGC_Race is the race the design closes: a push that found its chunks
// before a plan condemned their pack, committing when the plan is older
// than T/2, copies them to a fresh pack; gc then deletes the old pack and
// the new manifest still checks.
func TestGC_Race(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			dir := memDir(t, 256, 7)
			if _, _, err := r.PushDir(ctx, dir, "vm", "v1", nil); err != nil {
				t.Fatal(err)
			}
			dropRepo(t, store, r, "vm")
			packs := storeKeys(t, store, "blobs/packs/")

			// The plan appears after the push classified its only batch.
			var once sync.Once
			var plan string
			progress := func(registry.TransferStats) {
				once.Do(func() { plan = writePlan(t, store, 50*time.Minute, packs, nil) })
			}
			_, st, err := r.PushDir(ctx, dir, "vm", "v2", progress)
			if err != nil {
				t.Fatal(err)
			}
			if plan == "" || st.NewChunks != 0 {
				t.Fatalf("plan %q, new chunks %d: the push did not reuse", plan, st.NewChunks)
			}
			if got := countKeys(t, store, "blobs/packs/"); got != len(packs)+1 {
				t.Fatalf("%d packs after the push, want %d: reused chunks not copied", got, len(packs)+1)
			}
			rep := gcAt(t, newRegistry(t, store), 2*time.Hour, registry.GCOptions{})
			if rep.PlansExecuted != 1 || rep.PacksDeleted != len(packs) {
				t.Fatalf("gc: %+v", rep)
			}
			checkClean(t, store)
			pullSame(t, store, "vm", "v2", dir)

			// A plan older than T/2 condemning a recipe the push reuses:
			// the push fails, retryably, and writes no manifest.
			recipes := storeKeys(t, store, "blobs/recipes/")
			plan = writePlan(t, store, 50*time.Minute, nil, recipes)
			if _, _, err := r.PushDir(ctx, dir, "vm", "v3", nil); !errors.Is(err, registry.ErrConcurrentGC) {
				t.Fatalf("push reusing a condemned recipe: %v", err)
			}
			if _, err := r.PullManifest(ctx, "vm", "v3"); !errors.Is(err, registry.ErrManifestNotFound) {
				t.Fatalf("v3 written: %v", err)
			}
			// A young plan (< T/2) only delays nothing: the manifest will be
			// visible long before that plan can be executed.
			_ = store.Delete(ctx, plan)
			plan = writePlan(t, store, 10*time.Minute, nil, recipes)
			if _, _, err := r.PushDir(ctx, dir, "vm", "v3", nil); err != nil {
				t.Fatalf("push under a young plan: %v", err)
			}
			_ = store.Delete(ctx, plan)

			// A plan present at the start: its packs' chunks count as unknown.
			packs = storeKeys(t, store, "blobs/packs/")
			plan = writePlan(t, store, 0, packs, nil)
			_, st, err = r.PushDir(ctx, dir, "vm", "v4", nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.NewChunks == 0 {
				t.Fatal("chunks of condemned packs were reused")
			}
			_ = store.Delete(ctx, plan)
			checkClean(t, store)
		})
	}
}

// TestGC_ConcurrentPush runs gc in a loop (real clock, short grace) while
// pushers push revisions: every manifest in the store must check.
func TestGC_ConcurrentPush(t *testing.T) {
	const grace = 3 * time.Second
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var pushes, retries, deleted atomic.Int64
			for w := range 2 {
				wg.Go(func() {
					r := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithGCGrace(grace), registry.WithPackSize(1<<20))
					defer r.Close()
					dir := memDir(t, 256, uint64(10+w))
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						rewritePages(t, filepath.Join(dir, "memory-ranges"), 24, uint64(100*w+n))
						_, _, err := r.PushDir(ctx, dir, fmt.Sprintf("p%d", w), fmt.Sprintf("n%d", n), nil)
						switch {
						case errors.Is(err, registry.ErrConcurrentGC):
							retries.Add(1)
						case err != nil:
							t.Errorf("push: %v", err)
							return
						default:
							pushes.Add(1)
						}
						time.Sleep(100 * time.Millisecond)
					}
				})
			}
			wg.Go(func() {
				r := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithGCGrace(grace))
				defer r.Close()
				for {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					rep, err := r.GC(ctx, registry.GCOptions{KeepLast: 2, Grace: grace})
					if err != nil {
						t.Errorf("gc: %v", err)
						return
					}
					deleted.Add(int64(rep.PacksDeleted))
				}
			})
			// Run for 12 s, and on until gc has deleted packs while the
			// pushes went on: on a loaded machine (CI runs packages in
			// parallel) 12 s once saw 50 pushes and no gc get as far as
			// deleting. The deadline only ends a run that never overlaps.
			start := time.Now()
			for time.Since(start) < 12*time.Second || deleted.Load() == 0 || pushes.Load() < 10 {
				if time.Since(start) > 2*time.Minute {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			t.Logf("%d pushes, %d ErrConcurrentGC, %d packs deleted in %v", pushes.Load(), retries.Load(), deleted.Load(), time.Since(start).Round(time.Second))
			if pushes.Load() == 0 || deleted.Load() == 0 {
				t.Fatal("the loops did not overlap: nothing pushed or nothing deleted")
			}
			checkClean(t, store)
		})
	}
}

// TestGC_Interrupted stops a run right after its tombstone write: the
// store still checks, and the next run finishes the job.
func TestGC_Interrupted(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, store)
			keep := memDir(t, 128, 1)
			if _, _, err := r.PushDir(ctx, keep, "keep", "v1", nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.PushDir(ctx, memDir(t, 128, 2), "drop", "v1", nil); err != nil {
				t.Fatal(err)
			}
			dropRepo(t, store, r, "drop")
			gcAt(t, r, 2*time.Hour, registry.GCOptions{})
			crash := errors.New("crash")
			restore := registry.SetGCTestHook(func(point string) error {
				if point == "tombstone" {
					return crash
				}
				return nil
			})
			at := time.Now().Add(4 * time.Hour)
			_, err := r.GC(ctx, registry.GCOptions{Now: func() time.Time { return at }})
			restore()
			if !errors.Is(err, crash) {
				t.Fatalf("gc: %v", err)
			}
			if countKeys(t, store, "gc/deleted/") != 1 || countKeys(t, store, "gc/plans/") != 1 {
				t.Fatal("want a tombstone and the plan left")
			}
			checkClean(t, store)
			pullSame(t, store, "keep", "v1", keep)
			rep := gcAt(t, r, 6*time.Hour, registry.GCOptions{})
			if rep.PacksDeleted != 1 || rep.PlansExecuted != 1 {
				t.Fatalf("finishing run: %+v", rep)
			}
			checkClean(t, store)
			pullSame(t, store, "keep", "v1", keep)
		})
	}
}

func TestGC_DryRun(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	dir := memDir(t, 128, 1)
	for i := range 3 {
		rewritePages(t, filepath.Join(dir, "memory-ranges"), 64, uint64(i))
		if _, _, err := r.PushDir(ctx, dir, "vm", fmt.Sprintf("v%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	gcAt(t, r, 2*time.Hour, registry.GCOptions{KeepLast: 1})
	snapshot := func() map[string]string {
		m := map[string]string{}
		_ = store.List(ctx, "", func(oi objectstore.ObjectInfo) error { m[oi.Key] = oi.ETag; return nil })
		return m
	}
	before := snapshot()
	rep := gcAt(t, r, 4*time.Hour, registry.GCOptions{KeepLast: 1, DryRun: true})
	if !rep.DryRun || rep.PacksDeleted == 0 || rep.Tombstone != "" {
		t.Fatalf("dry run report %+v", rep)
	}
	after := snapshot()
	if len(before) != len(after) {
		t.Fatalf("dry run changed the store: %d -> %d objects", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("dry run changed %s", k)
		}
	}
}
