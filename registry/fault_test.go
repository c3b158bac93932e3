package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// rawStore is a real backend with the prefix a client puts it under, and a
// plain client (no faults) over it.
type rawStore struct {
	name    string
	backend objectstore.Backend
	prefix  string
	plain   *objectstore.Client
	// dir is the folder of a local store ("" for S3): child processes open
	// it again by path.
	dir string
	cfg *objectstore.Config
}

// rawStores returns a fresh local store and, when the test S3 server is
// configured, a fresh S3 prefix, emptied at the end of the test.
func rawStores(t *testing.T) []rawStore {
	t.Helper()
	dir := t.TempDir()
	lb, err := objectstore.NewLocalBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []rawStore{{name: "local", backend: lb, plain: objectstore.NewFromBackend(lb, ""), dir: dir}}
	if s := s3RawStore(t); s != nil {
		out = append(out, *s)
	}
	return out
}

func s3RawStore(t *testing.T) *rawStore {
	t.Helper()
	cfg, ok := objectstoretest.S3Config(t)
	if !ok {
		return nil
	}
	b, err := objectstore.NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	prefix := cfg.EffectivePrefix()
	plain := objectstore.NewFromBackend(b, prefix, objectstore.WithBackoff(20*time.Millisecond, time.Second))
	t.Cleanup(func() { objectstoretest.Empty(t, plain) })
	return &rawStore{name: "s3", backend: b, prefix: prefix, plain: plain, cfg: cfg}
}

// faults5 fails or cuts about 5 % of the requests.
func faults5(seed uint64) objectstoretest.FaultConfig {
	return objectstoretest.FaultConfig{
		Seed:        seed,
		ErrorRate:   0.02,
		CutRate:     0.05, // of Gets
		CutMax:      4096, // so small objects are cut too
		LostPutRate: 0.02,
		FailPutRate: 0.01,
		LatencyRate: 0.05, MaxLatency: 3 * time.Millisecond,
	}
}

// checkStore runs Check from a fresh node (its own empty index) and fails
// the test on any problem.
func checkStore(t *testing.T, store *objectstore.Client, readData bool) *registry.CheckReport {
	t.Helper()
	r := newRegistry(t, store)
	rep, err := r.Check(context.Background(), registry.CheckOptions{ReadData: readData})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, p := range rep.Problems {
		t.Errorf("check problem: %+v", p)
	}
	return rep
}

// rootState maps every regular file under root (relative path) to the
// SHA-256 of its content. Cocoon's lock file and pull staging dirs are
// left out: neither is the state Cocoon reads.
func rootState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), cocoon.StagingPrefix) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "snapshots.lock" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// dbRecords returns the records of snapshots.json as raw JSON by id.
func dbRecords(t *testing.T, p *cocoon.Paths) map[string]json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(p.SnapshotDBFile)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]json.RawMessage{}
	}
	if err != nil {
		t.Fatal(err)
	}
	var db struct {
		Snapshots map[string]json.RawMessage `json:"snapshots"`
	}
	if err := json.Unmarshal(data, &db); err != nil {
		t.Fatalf("snapshots.json: %v", err)
	}
	return db.Snapshots
}

// rootSnap is what a Cocoon root held at one moment.
type rootSnap struct {
	files   map[string]string
	records map[string]json.RawMessage
}

func snapRoot(t *testing.T, p *cocoon.Paths) rootSnap {
	t.Helper()
	return rootSnap{files: rootState(t, p.RootDir), records: dbRecords(t, p)}
}

// oldOrNew checks that dst holds either exactly the state before (old) or
// the complete snapshot id as in src, recorded with manifest digest want,
// with everything else as before (new). It returns true for new.
func oldOrNew(t *testing.T, dst *cocoon.Paths, before rootSnap, src *cocoon.Paths, id, want string) bool {
	t.Helper()
	after := snapRoot(t, dst)
	if maps_equal(after.files, before.files) {
		return false
	}
	dataPrefix := "snapshot/localfile/" + id + "/"
	srcDir, _ := src.SnapshotDir(id)
	wantData := map[string]string{}
	for k, v := range rootState(t, srcDir) {
		wantData[dataPrefix+k] = v
	}
	gotData := map[string]string{}
	for k, v := range after.files {
		switch {
		case strings.HasPrefix(k, dataPrefix):
			gotData[k] = v
		case k == "snapshot/db/snapshots.json":
		case strings.HasPrefix(k, "cloudimg/blobs/") && before.files[k] == "":
			// A base image pulled by this pull: complete and verified.
			if name := strings.TrimSuffix(strings.TrimPrefix(k, "cloudimg/blobs/"), ".qcow2"); name != v {
				t.Errorf("base image %s hashes to %s", k, v)
			}
		default:
			if before.files[k] != v {
				t.Errorf("%s changed outside the snapshot", k)
			}
		}
	}
	for k := range before.files {
		if _, ok := after.files[k]; !ok && !strings.HasPrefix(k, dataPrefix) {
			t.Errorf("%s vanished", k)
		}
	}
	oldData := map[string]string{}
	for k, v := range before.files {
		if strings.HasPrefix(k, dataPrefix) {
			oldData[k] = v
		}
	}
	dataNew := maps_equal(gotData, wantData)
	if !dataNew && !maps_equal(gotData, oldData) {
		t.Fatalf("snapshot dir %s is neither the old nor the new revision:\n got %v\nwant %v\n old %v", id, keys(gotData), keys(wantData), keys(oldData))
	}
	recNew := false
	for rid, raw := range after.records {
		if rid != id {
			if !sameJSON(raw, before.records[rid]) {
				t.Errorf("foreign record %s changed:\n got %s\nwant %s", rid, raw, before.records[rid])
			}
			continue
		}
		var rec map[string]any
		_ = json.Unmarshal(raw, &rec)
		recNew = rec["epoch_manifest_digest"] == want
		if !recNew && !sameJSON(raw, before.records[rid]) {
			t.Errorf("record %s is neither old nor new: %s", id, raw)
		}
	}
	if dataNew != recNew {
		t.Fatalf("half-installed snapshot: new data %v, new record %v", dataNew, recNew)
	}
	return dataNew
}

// sameJSON compares two JSON documents by value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func maps_equal(a, b map[string]string) bool { //nolint:revive // local helper
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// tagDigest returns the digest of name:tag's manifest, "" when absent.
func tagDigest(t *testing.T, store *objectstore.Client, name, tag string) string {
	t.Helper()
	r := registry.New(store, registry.WithCacheDir(t.TempDir()))
	defer r.Close()
	data, err := r.ManifestJSON(context.Background(), name, tag)
	if errors.Is(err, registry.ErrManifestNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return manifest.Digest(data)
}

// faultTally counts the runs of one kind of operation.
type faultTally struct {
	runs, failed, clean int // clean: reruns without faults
}

// retryUntil runs op until it succeeds, at most limit times with faults,
// then once more without, checking after every failure that the error
// traces back to an injected fault and that after holds.
func retryUntil(t *testing.T, f *objectstoretest.Faulty, what string, limit int, tally *faultTally, op func() error, after func()) {
	t.Helper()
	defer f.SetEnabled(true)
	for i := range limit + 1 {
		f.SetEnabled(i < limit)
		tally.runs++
		err := op()
		if err == nil {
			if i == limit {
				tally.clean++
			}
			return
		}
		tally.failed++
		msg := err.Error()
		if !strings.Contains(msg, "injected fault") && !strings.Contains(msg, "unexpected EOF") {
			t.Errorf("%s failed with an error that does not trace back to a fault: %v", what, err)
		} else {
			t.Logf("%s run %d failed: %v", what, tally.runs, err)
		}
		if after != nil {
			after()
		}
	}
	t.Fatalf("%s: no success in %d runs, the last without faults", what, limit+1)
}

// TestFaults_PushPull pushes and pulls snapshots and blobs through a store
// that fails or cuts about 5 % of the requests. Every operation succeeds or
// fails with an error; a failed one leaves the Cocoon root as it was and
// the store sound, and a rerun succeeds. At the end the store passes a full
// Check and a node that saw no fault pulls everything back.
func TestFaults_PushPull(t *testing.T) {
	ctx := context.Background()
	for i, rs := range rawStores(t) {
		t.Run(rs.name, func(t *testing.T) {
			const limit = 4 // faulty runs before a rerun without faults
			// One attempt per request: every fault reaches the registry, so
			// failed runs and their reruns are exercised. (With the default
			// retries nearly every fault is healed below the registry.)
			client, faulty := objectstoretest.NewFaultyClient(rs.backend, faults5(uint64(100+i)), rs.prefix, objectstore.WithMaxAttempts(1))
			var push, pull, pushBlob, pullBlob faultTally

			src := cocoon.NewPaths(t.TempDir())
			series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 4 << 20, DiskSize: 1 << 20, Seed: 31})
			id, err := series.WriteSnapshot(src.RootDir)
			if err != nil {
				t.Fatal(err)
			}
			pushCache := t.TempDir()
			pusher := registry.New(client, registry.WithCacheDir(pushCache), registry.WithPackSize(1<<20))
			defer pusher.Close()
			// Packs are spooled to unlinked files: failed pushes leave none.
			defer func() {
				if left, _ := filepath.Glob(filepath.Join(pushCache, "*.spool")); len(left) > 0 {
					t.Errorf("spooled packs left in the cache dir: %v", left)
				}
			}()
			puller := registry.New(client, registry.WithCacheDir(t.TempDir()), registry.WithPackSize(1<<20))
			defer puller.Close()

			dst := cocoon.NewPaths(t.TempDir())
			other := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "other", MemorySize: 1 << 20, DiskSize: 1 << 20, Seed: 98})
			if _, err := other.WriteSnapshot(dst.RootDir); err != nil {
				t.Fatal(err)
			}

			for rev := range 2 {
				if rev > 0 {
					series.Next(snapgen.MemoryChange{DirtyFraction: 0.05, ZeroFraction: 0.01}, 128<<10, 0.05)
					if _, err := series.WriteSnapshot(src.RootDir); err != nil {
						t.Fatal(err)
					}
				}
				oldTag := tagDigest(t, rs.plain, "vm", "latest")
				retryUntil(t, faulty, "push", limit, &push, func() error {
					_, _, err := pusher.PushSnapshot(ctx, src, "vm", "latest", nil)
					return err
				}, func() {
					// The tag names the old revision or a complete new one.
					if d := tagDigest(t, rs.plain, "vm", "latest"); d != oldTag {
						checkStore(t, rs.plain, false)
					}
				})
				want := tagDigest(t, rs.plain, "vm", "latest")
				if want == "" || want == oldTag {
					t.Fatalf("revision %d: tag not updated", rev)
				}
				checkStore(t, rs.plain, false)

				before := snapRoot(t, dst)
				retryUntil(t, faulty, "pull", limit, &pull, func() error {
					_, _, err := puller.PullSnapshot(ctx, dst, "vm", "latest", registry.PullOptions{})
					return err
				}, func() {
					if oldOrNew(t, dst, before, src, id, want) {
						t.Fatal("a failed pull installed the new revision")
					}
				})
				if !oldOrNew(t, dst, before, src, id, want) {
					t.Fatalf("revision %d: pull succeeded but the root holds the old state", rev)
				}
				sameTree(t, src, dst, id, id)
			}

			// Blobs.
			blobDir := t.TempDir()
			path := filepath.Join(blobDir, "disk.raw")
			writeImage(t, path, 600, 77)
			var digest string
			retryUntil(t, faulty, "push blob", limit, &pushBlob, func() error {
				var err error
				digest, _, err = pusher.PushBlob(ctx, path)
				return err
			}, nil)
			outDir := t.TempDir()
			out := filepath.Join(outDir, "disk.out")
			retryUntil(t, faulty, "pull blob", limit, &pullBlob, func() error {
				return puller.PullBlob(ctx, digest, out)
			}, func() {
				if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
					t.Fatalf("failed PullBlob left %v", entries)
				}
			})
			sameFile(t, path, out)

			faulty.SetEnabled(false)
			rep := checkStore(t, rs.plain, true)
			// A node that saw none of the faults pulls everything back.
			fresh := newRegistry(t, rs.plain)
			dst2 := cocoon.NewPaths(t.TempDir())
			if _, _, err := fresh.PullSnapshot(ctx, dst2, "vm", "latest", registry.PullOptions{}); err != nil {
				t.Fatalf("fresh node pull: %v", err)
			}
			sameTree(t, src, dst2, id, id)
			out2 := filepath.Join(t.TempDir(), "disk.out")
			if err := fresh.PullBlob(ctx, digest, out2); err != nil {
				t.Fatalf("fresh node blob pull: %v", err)
			}
			sameFile(t, path, out2)

			c := faulty.Counts()
			t.Logf("%s: runs (failed/total/clean reruns): push %d/%d/%d, pull %d/%d/%d, push blob %d/%d/%d, pull blob %d/%d/%d; faults injected %d: %s; check: %d manifests, %d packs, %d chunks read",
				rs.name, push.failed, push.runs, push.clean, pull.failed, pull.runs, pull.clean,
				pushBlob.failed, pushBlob.runs, pushBlob.clean, pullBlob.failed, pullBlob.runs, pullBlob.clean,
				c.Faults(), c, rep.Manifests, rep.PacksRead, rep.Chunks)
		})
	}
}
