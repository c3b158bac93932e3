package registry_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// mpChildEnv makes the test binary act as one registry client process (see
// init below). Its value is a JSON mpSpec. The dispatch lives in init, not
// in TestMain, so kill_test.go's TestMain stays as it is.
const mpChildEnv = "EPOCH_TEST_MP_CHILD"

// mpSpec tells a child process what to do.
type mpSpec struct {
	Op       string `json:"op"`       // "pushdir", "push" (a Cocoon snapshot) or "pull"
	StoreDir string `json:"storeDir"` // local store folder; "" for S3
	Prefix   string `json:"prefix"`   // S3 prefix (S3 settings come from EPOCH_TEST_S3_*)
	Cache    string `json:"cache"`    // node index folder
	Src      string `json:"src"`      // folder (pushdir) or Cocoon root (push)
	Root     string `json:"root"`     // Cocoon root (pull)
	Name     string `json:"name"`
	Tags     []string
	// Gate: wait for a line on stdin before starting, after saying "ready".
	Gate bool `json:"gate"`
	// KillAt: the child sends itself SIGKILL at its KillAt-th store call
	// (Put, Get or Stat), before the call reaches the store or, with
	// KillAfter, after it completed. 0: never.
	KillAt    int64 `json:"killAt"`
	KillAfter bool  `json:"killAfter"`
	// KillKey, if set, kills at the first call whose key contains it.
	KillKey string `json:"killKey"`
}

func init() {
	spec := os.Getenv(mpChildEnv)
	if spec == "" {
		return
	}
	os.Exit(mpChild(spec))
}

// killBackend kills its own process with SIGKILL at the at-th call, a
// crash at a seeded point of a push or pull.
type killBackend struct {
	objectstore.Backend
	at    int64
	key   string
	after bool
	n     *atomic.Int64
}

func (k killBackend) call(op, key string, done bool) {
	n := k.n.Load()
	if !done {
		n = k.n.Add(1) // every call counts, also when killing after one
	}
	if done != k.after {
		return
	}
	if (k.key == "" && k.at > 0 && n >= k.at) || (k.key != "" && strings.Contains(key, k.key)) {
		when := "before"
		if done {
			when = "after"
		}
		fmt.Fprintf(os.Stderr, "killed %s %s %s\n", when, op, key)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func (k killBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	k.call("put", key, false)
	defer k.call("put", key, true)
	return k.Backend.Put(ctx, key, body, size, opts)
}

func (k killBackend) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	k.call("get", key, false)
	defer k.call("get", key, true)
	return k.Backend.Get(ctx, key, off, n)
}

func (k killBackend) Stat(ctx context.Context, key string) (objectstore.ObjectInfo, error) {
	k.call("stat", key, false)
	defer k.call("stat", key, true)
	return k.Backend.Stat(ctx, key)
}

// childBackend opens, in a child process, the store a parent test made:
// the folder storeDir, or the test S3 server under prefix when storeDir is
// empty. It returns the backend and the prefix to give the client.
func childBackend(storeDir, prefix string) (objectstore.Backend, string, error) {
	if storeDir != "" {
		b, err := objectstore.NewLocalBackend(storeDir)
		return b, "", err
	}
	cfg, err := objectstore.ConfigFromEnv("EPOCH_TEST_S3")
	if err != nil {
		return nil, "", err
	}
	cfg.Prefix = prefix
	b, err := objectstore.NewBackend(cfg)
	return b, cfg.EffectivePrefix(), err
}

// mpChild runs one spec; it prints "ready" (when gated) and one "ok
// <name>:<tag> <digest>" line per acknowledged push, and exits 0 on success.
func mpChild(raw string) int {
	var spec mpSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	b, prefix, err := childBackend(spec.StoreDir, spec.Prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child store:", err)
		return 2
	}
	if spec.KillAt > 0 || spec.KillKey != "" {
		b = killBackend{Backend: b, at: spec.KillAt, key: spec.KillKey, after: spec.KillAfter, n: new(atomic.Int64)}
	}
	client := objectstore.NewFromBackend(b, prefix, objectstore.WithBackoff(10*time.Millisecond, 500*time.Millisecond))
	r := registry.New(client, registry.WithCacheDir(spec.Cache), registry.WithPackSize(1<<20))
	defer r.Close()
	if spec.Gate {
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil && err != io.EOF {
			fmt.Fprintln(os.Stderr, "child gate:", err)
			return 2
		}
	}
	ctx := context.Background()
	for _, tag := range spec.Tags {
		var (
			m   *manifest.Manifest
			err error
		)
		switch spec.Op {
		case "pushdir":
			m, _, err = r.PushDir(ctx, spec.Src, spec.Name, tag, nil)
		case "push":
			m, _, err = r.PushSnapshot(ctx, cocoon.NewPaths(spec.Src), spec.Name, tag, nil)
		case "pull":
			m, _, err = r.PullSnapshot(ctx, cocoon.NewPaths(spec.Root), spec.Name, tag, registry.PullOptions{})
		default:
			err = fmt.Errorf("unknown op %q", spec.Op)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		if spec.Op != "pull" {
			data, err := m.Marshal()
			if err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				return 1
			}
			fmt.Printf("ok %s:%s %s\n", spec.Name, tag, manifest.Digest(data))
		}
	}
	return 0
}

// mpProc is one started child.
type mpProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr strings.Builder
}

func startChild(t *testing.T, spec mpSpec) *mpProc {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &mpProc{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	p.cmd.Env = append(os.Environ(), mpChildEnv+"="+string(raw))
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(stdout)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// finish waits for the child and returns its "ok" lines as ref -> digest.
func (p *mpProc) finish() (map[string]string, error) {
	acked := map[string]string{}
	for {
		line, err := p.out.ReadString('\n')
		if f := strings.Fields(line); len(f) == 3 && f[0] == "ok" {
			acked[f[1]] = f[2]
		}
		if err != nil {
			break
		}
	}
	_ = p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return acked, fmt.Errorf("%w: %s", err, p.stderr.String())
	}
	return acked, nil
}

// runTogether starts one child per spec, waits until all are ready, then
// releases them at once and collects what they acknowledged.
func runTogether(t *testing.T, specs []mpSpec) map[string]string {
	t.Helper()
	procs := make([]*mpProc, len(specs))
	for i, s := range specs {
		s.Gate = true
		procs[i] = startChild(t, s)
	}
	for i, p := range procs {
		line, err := p.out.ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("child %d not ready: %q %v %s", i, line, err, p.stderr.String())
		}
	}
	for _, p := range procs {
		_, _ = io.WriteString(p.stdin, "go\n")
	}
	acked := map[string]string{}
	for i, p := range procs {
		got, err := p.finish()
		if err != nil {
			t.Errorf("child %d (%s %s %v): %v", i, specs[i].Op, specs[i].Name, specs[i].Tags, err)
		}
		for k, v := range got {
			if prev, ok := acked[k]; ok && prev != v {
				acked[k] = "multi" // several writers of one tag
				continue
			}
			acked[k] = v
		}
	}
	return acked
}

// mpStore returns the spec fields and a plain client for a fresh store of
// the kind name ("local" or "s3"), or nil when S3 is not configured.
func mpStore(t *testing.T, kind string) (*objectstore.Client, mpSpec) {
	t.Helper()
	if kind == "local" {
		dir := t.TempDir()
		c, err := objectstore.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		return c, mpSpec{StoreDir: dir}
	}
	rs := s3RawStore(t)
	if rs == nil {
		return nil, mpSpec{}
	}
	return rs.plain, mpSpec{Prefix: rs.prefix}
}

// writeDirRevision writes a small folder: a shared part and a part that
// depends on rev, so pushes of different revisions dedup against each other.
func writeDirRevision(t *testing.T, dir string, rev int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeImage(t, filepath.Join(dir, "disk.img"), 64, 1) // shared by every revision
	writeImage(t, filepath.Join(dir, "memory"), 48, 1000+uint64(rev))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"rev":%d}`, rev), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMultiProc_SameInstantTags: 16 processes push 16 tags of one
// repository, released at the same instant into an empty store (so they
// also race to create the store config): every tag is in the catalog and
// ListTags, and the store checks sound.
func TestMultiProc_SameInstantTags(t *testing.T) {
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			store, base := mpStore(t, kind)
			if store == nil {
				t.Skip("S3 test server not configured")
			}
			var specs []mpSpec
			for i := range 16 {
				s := base
				s.Op, s.Name, s.Tags = "pushdir", "app", []string{fmt.Sprintf("t%02d", i)}
				s.Src = filepath.Join(t.TempDir(), "src")
				writeDirRevision(t, s.Src, i)
				s.Cache = t.TempDir()
				specs = append(specs, s)
			}
			acked := runTogether(t, specs)
			if len(acked) != 16 {
				t.Fatalf("%d pushes acknowledged, want 16: %v", len(acked), acked)
			}
			ctx := context.Background()
			r := newRegistry(t, store)
			tags, err := r.ListTags(ctx, "app")
			if err != nil {
				t.Fatal(err)
			}
			cat, err := r.GetCatalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 16 {
				tag := fmt.Sprintf("t%02d", i)
				if !slices.Contains(tags, tag) {
					t.Errorf("ListTags lacks %s: %v", tag, tags)
				}
				if repo := cat.Repositories["app"]; repo == nil || repo.Tags[tag] != acked["app:"+tag] {
					t.Errorf("catalog lacks app:%s (digest %s)", tag, acked["app:"+tag])
				}
			}
			checkStore(t, store, true)
		})
	}
}

// TestMultiProc_Revisions: 8 processes push revisions of two Cocoon VMs
// concurrently, each under its own tag and all under the same
// "latest" of their VM: every acknowledged tag is present and names the
// acknowledged manifest, "latest" names one of its pushers' manifests, and a
// full Check passes.
func TestMultiProc_Revisions(t *testing.T) {
	store, base := mpStore(t, "local")
	ctx := context.Background()
	var specs []mpSpec
	for v, vm := range []string{"vma", "vmb"} {
		series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: vm, MemorySize: 2 << 20, DiskSize: 512 << 10, Seed: uint64(40 + v)})
		for rev := range 4 {
			if rev > 0 {
				series.Next(snapgen.MemoryChange{DirtyFraction: 0.05}, 64<<10, 0.02)
			}
			root := t.TempDir()
			if _, err := series.WriteSnapshot(root); err != nil {
				t.Fatal(err)
			}
			s := base
			s.Op, s.Name, s.Src, s.Cache = "push", vm, root, t.TempDir()
			s.Tags = []string{fmt.Sprintf("rev%d", rev), "latest"}
			specs = append(specs, s)
		}
	}
	// Base images (4 MiB each) are pushed once up front, so the children
	// skip them as known and the test stays small.
	for _, s := range specs[:1] {
		if _, err := newRegistry(t, store).Push(ctx, cocoon.NewPaths(s.Src), s.Name, "base", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := newRegistry(t, store).Push(ctx, cocoon.NewPaths(specs[4].Src), specs[4].Name, "base", nil); err != nil {
		t.Fatal(err)
	}
	acked := runTogether(t, specs)
	r := newRegistry(t, store)
	for ref, digest := range acked {
		name, tag, _ := strings.Cut(ref, ":")
		data, err := r.ManifestJSON(ctx, name, tag)
		if err != nil {
			t.Errorf("acknowledged %s: %v", ref, err)
			continue
		}
		got := manifest.Digest(data)
		if tag == "latest" {
			continue // several writers; checked below
		}
		if got != digest {
			t.Errorf("%s names %s, acknowledged %s", ref, got, digest)
		}
	}
	if len(acked) != 8+2 {
		t.Errorf("%d refs acknowledged, want 10", len(acked))
	}
	for _, vm := range []string{"vma", "vmb"} {
		data, err := r.ManifestJSON(ctx, vm, "latest")
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		// latest equals one of the revisions (same content, other tag).
		found := false
		for rev := range 4 {
			other, err := r.PullManifest(ctx, vm, fmt.Sprintf("rev%d", rev))
			if err == nil && slices.EqualFunc(other.Layers, m.Layers, func(a, b manifest.Layer) bool { return a.Digest == b.Digest }) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s:latest is none of the pushed revisions", vm)
		}
	}
	checkStore(t, store, true)
}

// TestMultiProc_Killed kills pushing and pulling processes with SIGKILL at
// seeded random store calls: after each kill the store checks sound, the
// tag names the old or the new revision, the Cocoon root holds the old state
// or the complete new snapshot, and a rerun on the same node (same node
// index) succeeds. At the end a node that saw none of it pulls the last
// revision.
func TestMultiProc_Killed(t *testing.T) {
	const runs = 8
	ctx := context.Background()
	store, base := mpStore(t, "local")
	rng := rand.New(rand.NewPCG(7, 11))
	src := cocoon.NewPaths(t.TempDir())
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 2 << 20, DiskSize: 512 << 10, Seed: 61})
	id, err := series.WriteSnapshot(src.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	pushCache, pullCache := t.TempDir(), t.TempDir() // one pushing and one pulling node
	dst := cocoon.NewPaths(t.TempDir())
	// node runs op on a registry over the node index in cache, in this
	// process, and returns how many store calls it made.
	node := func(cache string, op func(*registry.Registry) error) int64 {
		t.Helper()
		r := registry.New(store, registry.WithCacheDir(cache), registry.WithPackSize(1<<20))
		defer r.Close()
		before := store.Stats()
		if err := op(r); err != nil {
			t.Fatal(err)
		}
		after := store.Stats()
		return after.PutRequests + after.GetRequests + after.OtherRequests - before.PutRequests - before.GetRequests - before.OtherRequests
	}
	push := func(r *registry.Registry) error { _, err := r.Push(ctx, src, "vm", "latest", nil); return err }
	pull := func(r *registry.Registry) error { _, err := r.Pull(ctx, dst, "vm", "latest", nil); return err }
	pushCalls := node(pushCache, push)
	pullCalls := node(pullCache, pull)

	pushSpec := base
	pushSpec.Op, pushSpec.Name, pushSpec.Src, pushSpec.Cache, pushSpec.Tags = "push", "vm", src.RootDir, pushCache, []string{"latest"}
	pullSpec := base
	pullSpec.Op, pullSpec.Name, pullSpec.Root, pullSpec.Cache, pullSpec.Tags = "pull", "vm", dst.RootDir, pullCache, []string{"latest"}
	// kill runs spec killed at a random call in [1, calls] and reports
	// whether it died (a late kill point may let it finish).
	kill := func(spec mpSpec, calls int64) (bool, string) {
		if spec.KillKey == "" {
			spec.KillAt = 1 + rng.Int64N(max(calls, 1))
			spec.KillAfter = rng.IntN(2) == 0
		}
		_, err := startChild(t, spec).finish()
		if err == nil {
			return false, fmt.Sprintf("none (call %d)", spec.KillAt)
		}
		if !strings.Contains(err.Error(), "signal: killed") {
			t.Fatalf("child failed without being killed: %v", err)
		}
		_, where, _ := strings.Cut(err.Error(), "killed ")
		where = strings.TrimSpace(where)
		if i := strings.Index(where, "/"); i > 0 { // keep the kind of key
			if j := strings.IndexAny(where[i+1:], "/."); j > 0 {
				where = where[:i+1+j]
			}
		}
		return true, where
	}
	var pushKilled, pullKilled int
	var pushAt, pullAt []string
	defer func() {
		t.Logf("%d runs: push killed %d times (of ~%d calls), at %q; pull killed %d times (of ~%d calls), at %q",
			len(pushAt), pushKilled, pushCalls, pushAt, pullKilled, pullCalls, pullAt)
	}()
	for run := range runs + 1 {
		if run == runs {
			// Deterministically, the crash between a pack upload and
			// the index object that publishes it.
			pushSpec.KillKey = "blobs/index/"
		}
		// A new revision, pushed by a process killed somewhere.
		series.Next(snapgen.MemoryChange{DirtyFraction: 0.1, ZeroFraction: 0.01}, 64<<10, 0.05)
		if _, err := series.WriteSnapshot(src.RootDir); err != nil {
			t.Fatal(err)
		}
		old := tagDigest(t, store, "vm", "latest")
		killed, at := kill(pushSpec, pushCalls)
		if killed {
			pushKilled++
		}
		pushAt = append(pushAt, at)
		checkStore(t, store, false)
		node(pushCache, push)
		want := tagDigest(t, store, "vm", "latest")
		if want == old {
			t.Fatalf("run %d: the push did not move the tag", run)
		}
		// Check from a node that never saw the push: every chunk the
		// manifest needs is findable through the store's index objects.
		checkStore(t, store, false)

		before := snapRoot(t, dst)
		killed, at = kill(pullSpec, pullCalls)
		if killed {
			pullKilled++
		}
		pullAt = append(pullAt, at)
		oldOrNew(t, dst, before, src, id, want)
		node(pullCache, pull)
		if !oldOrNew(t, dst, before, src, id, want) {
			t.Fatalf("run %d: pull rerun left the old state", run)
		}
		sameTree(t, src, dst, id, id)
	}
	checkStore(t, store, true)
	dst2 := cocoon.NewPaths(t.TempDir())
	if _, _, err := newRegistry(t, store).PullSnapshot(ctx, dst2, "vm", "latest", registry.PullOptions{}); err != nil {
		t.Fatalf("fresh node pull: %v", err)
	}
	sameTree(t, src, dst2, id, id)
}
