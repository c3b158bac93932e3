package registry_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// gcpChildEnv makes the test binary act as one pushing or collecting process
// of the TestGCProc_* tests. Its value is a JSON gcpSpec. Like mpChildEnv it
// is dispatched from init; it has its own variable (and spec) so the pushes
// can carry a gc grace and gc runs a clock.
const gcpChildEnv = "EPOCH_TEST_GCPROC_CHILD"

// gcpPush is one push of a gc-process child.
type gcpPush struct {
	Name string `json:"name"`
	Tag  string `json:"tag"`
	Src  string `json:"src"` // folder (PushDir)
}

// gcpSpec tells a gc-process child what to do.
type gcpSpec struct {
	Op       string        `json:"op"` // "push" or "gc"
	StoreDir string        `json:"storeDir"`
	Prefix   string        `json:"prefix"`
	Cache    string        `json:"cache"`
	Grace    time.Duration `json:"grace"` // WithGCGrace and GCOptions.Grace
	Gate     bool          `json:"gate"`  // say "ready", wait for a line

	// push: the pushes, in order, Pause apart; ErrConcurrentGC is retried.
	Pushes []gcpPush     `json:"pushes"`
	Pause  time.Duration `json:"pause"`

	// gc: one run, or (Loop) runs Interval apart until stdin closes.
	Loop     bool          `json:"loop"`
	Interval time.Duration `json:"interval"`
	KeepLast int           `json:"keepLast"`
	Now      int64         `json:"now"` // GCOptions.Now, Unix ns; 0: real clock

	// Kills (see killBackend): at the KillAt-th store call (Put, Get,
	// Stat, Delete, List), before it or (KillAfter) after it; or before
	// the first KillOp call whose key contains KillKey.
	KillAt    int64  `json:"killAt"`
	KillAfter bool   `json:"killAfter"`
	KillOp    string `json:"killOp"`
	KillKey   string `json:"killKey"`
}

func init() {
	if spec := os.Getenv(gcpChildEnv); spec != "" {
		os.Exit(gcpChild(spec))
	}
}

// gcKillBackend is killBackend also counting (and killing at) Delete and
// List, the calls a gc run is mostly made of, plus a kill before the first
// op call on a key containing key.
type gcKillBackend struct {
	killBackend
	op, key string
}

func (k gcKillBackend) hit(op, key string) {
	if k.op == op && strings.Contains(key, k.key) {
		fmt.Fprintf(os.Stderr, "killed before %s %s\n", op, key)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

func (k gcKillBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	k.hit("put", key)
	return k.killBackend.Put(ctx, key, body, size, opts)
}

func (k gcKillBackend) Delete(ctx context.Context, key string) error {
	k.hit("delete", key)
	k.call("delete", key, false)
	defer k.call("delete", key, true)
	return k.Backend.Delete(ctx, key)
}

func (k gcKillBackend) List(ctx context.Context, prefix string, fn func(objectstore.ObjectInfo) error) error {
	k.call("list", prefix, false)
	defer k.call("list", prefix, true)
	return k.Backend.List(ctx, prefix, fn)
}

// gcpChild runs one gcpSpec. It prints "ok <name>:<tag> <digest>
// <pushedAt ns>" per acknowledged push, "retry <name>:<tag>" per
// ErrConcurrentGC, "gc <report JSON>" per gc run and, at the end, "calls
// <n>" (store calls made).
func gcpChild(raw string) int {
	var spec gcpSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	b, prefix, err := childBackend(spec.StoreDir, spec.Prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child store:", err)
		return 2
	}
	kb := gcKillBackend{killBackend: killBackend{Backend: b, at: spec.KillAt, after: spec.KillAfter, n: new(atomic.Int64)}, op: spec.KillOp, key: spec.KillKey}
	client := objectstore.NewFromBackend(kb, prefix, objectstore.WithBackoff(10*time.Millisecond, 500*time.Millisecond))
	r := registry.New(client, registry.WithCacheDir(spec.Cache), registry.WithPackSize(1<<20), registry.WithGCGrace(spec.Grace))
	defer r.Close()
	in := bufio.NewReader(os.Stdin)
	if spec.Gate {
		fmt.Println("ready")
		if _, err := in.ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, "child gate:", err)
			return 2
		}
	}
	ctx := context.Background()
	switch spec.Op {
	case "push":
		for i, p := range spec.Pushes {
			if i > 0 {
				time.Sleep(spec.Pause)
			}
			for attempt := 0; ; attempt++ {
				m, _, err := r.PushDir(ctx, p.Src, p.Name, p.Tag, nil)
				if errors.Is(err, registry.ErrConcurrentGC) && attempt < 20 {
					fmt.Printf("retry %s:%s\n", p.Name, p.Tag)
					fmt.Fprintln(os.Stderr, "retry:", err)
					time.Sleep(spec.Grace / 2) // until the condemning plan is executed
					continue
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					return 1
				}
				data, err := m.Marshal()
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					return 1
				}
				fmt.Printf("ok %s:%s %s %d\n", p.Name, p.Tag, manifest.Digest(data), m.PushedAt.UnixNano())
				break
			}
		}
	case "gc":
		stop := make(chan struct{})
		if spec.Loop {
			go func() {
				_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
				close(stop)
			}()
		}
		opts := registry.GCOptions{KeepLast: spec.KeepLast, Grace: spec.Grace}
		if spec.Now != 0 {
			at := time.Unix(0, spec.Now)
			opts.Now = func() time.Time { return at }
		}
	loop:
		for {
			rep, err := r.GC(ctx, opts)
			if err != nil {
				fmt.Fprintln(os.Stderr, "child gc:", err)
				return 1
			}
			data, _ := json.Marshal(rep)
			fmt.Printf("gc %s\n", data)
			if !spec.Loop {
				break
			}
			select {
			case <-stop:
				break loop
			case <-time.After(spec.Interval):
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown op %q\n", spec.Op)
		return 2
	}
	fmt.Printf("calls %d\n", kb.n.Load())
	return 0
}

// gcpProc is a started gc-process child whose output is collected.
type gcpProc struct {
	*mpProc
	lines []string
	done  chan struct{}
}

// startGCP starts a child; when gated it waits for its "ready". Its stdout
// is collected in the background (a gc loop prints more than a pipe holds).
func startGCP(t *testing.T, spec gcpSpec) *gcpProc {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &gcpProc{mpProc: &mpProc{cmd: exec.Command(os.Args[0], "-test.run=^$")}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), gcpChildEnv+"="+string(raw))
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
			<-p.done
			_ = p.cmd.Wait()
		}
	})
	if spec.Gate {
		line, err := p.out.ReadString('\n')
		if err != nil || line != "ready\n" {
			go func() { _, _ = io.Copy(io.Discard, p.out); close(p.done) }()
			t.Fatalf("child %s not ready: %q %v", spec.Op, line, err)
		}
	}
	go func() {
		defer close(p.done)
		for {
			line, err := p.out.ReadString('\n')
			if line = strings.TrimSpace(line); line != "" {
				p.lines = append(p.lines, line)
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *gcpProc) release() { _, _ = io.WriteString(p.stdin, "go\n") }

// wait closes the child's stdin (which stops a gc loop), waits for it and
// returns its output lines.
func (p *gcpProc) wait() ([]string, error) {
	_ = p.stdin.Close()
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		return p.lines, fmt.Errorf("%w: %s", err, p.stderr.String())
	}
	return p.lines, nil
}

// gcReports parses the "gc" lines of a child's output.
func gcReports(t *testing.T, lines []string) []registry.GCReport {
	t.Helper()
	var out []registry.GCReport
	for _, l := range lines {
		if js, ok := strings.CutPrefix(l, "gc "); ok {
			var rep registry.GCReport
			if err := json.Unmarshal([]byte(js), &rep); err != nil {
				t.Fatalf("gc report %q: %v", js, err)
			}
			out = append(out, rep)
		}
	}
	return out
}

// gcTotals sums the counters of gc reports.
type gcTotals struct {
	runs, packsDeleted, packsCondemned, packsRewritten, plansExecuted, tagsDeleted, manifestsDeleted, recipesDeleted int
}

func (s *gcTotals) add(reps ...registry.GCReport) {
	for _, r := range reps {
		s.runs++
		s.packsDeleted += r.PacksDeleted
		s.packsCondemned += r.PacksCondemned
		s.packsRewritten += r.PacksRewritten
		s.plansExecuted += r.PlansExecuted
		s.tagsDeleted += r.TagsDeleted
		s.manifestsDeleted += r.ManifestsDeleted
		s.recipesDeleted += r.RecipesDeleted
	}
}

func (s gcTotals) String() string {
	return fmt.Sprintf("%d gc runs: %d packs deleted (%d condemned, %d rewritten), %d plans executed, %d recipes deleted, retention %d tags / %d digest manifests",
		s.runs, s.packsDeleted, s.packsCondemned, s.packsRewritten, s.plansExecuted, s.recipesDeleted, s.tagsDeleted, s.manifestsDeleted)
}

// gcpRevision is one acknowledged push.
type gcpRevision struct {
	name, tag, digest, src string
	pushedAt               int64
}

// writeGCPRevision fills dir with a disk image shared by every revision of
// every process, a copy of the memory image mem and a small config file.
func writeGCPRevision(t *testing.T, dir, mem string, proc, rev int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeImage(t, filepath.Join(dir, "disk.img"), 32, 1)
	data, err := os.ReadFile(mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"proc":%d,"rev":%d}`, proc, rev), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pullDirSame pulls name:ref (a tag or "sha256:<digest>") with r and
// compares every file of src with the pulled one.
func pullDirSame(t *testing.T, r *registry.Registry, name, ref, src string) {
	t.Helper()
	out := t.TempDir()
	if _, _, err := r.PullDir(context.Background(), name, ref, out, nil); err != nil {
		t.Errorf("pull %s:%s: %v", name, ref, err)
		return
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		sameFile(t, filepath.Join(src, e.Name()), filepath.Join(out, e.Name()))
	}
}

// keptDigests returns the digests of name's digest manifests.
func keptDigests(t *testing.T, store *objectstore.Client, name string) []string {
	t.Helper()
	var out []string
	for _, k := range storeKeys(t, store, "manifests/"+name+"/_digests/") {
		d := strings.TrimSuffix(strings.TrimPrefix(k, "manifests/"+name+"/_digests/sha256-"), ".json")
		out = append(out, d)
	}
	return out
}

// TestGCProc_WritersWhileGC: 8 processes push revisions (PushDir folders of
// ~400 KiB, patched against the previous revision where they move a tag) to
// a repository of their own (tag "latest", moved) and to one of two shared
// repositories (a tag per push), ErrConcurrentGC retried, while a 9th
// process runs gc (keep-last 2) in a loop, all with a 2 s grace. Then gc
// finishes (its clock moved ahead, nothing running). Every acknowledged
// revision is either kept (its digest manifest and tag present, the catalog
// naming it, pulled byte-exact) or was dropped by retention, which means at
// least two newer revisions of its repository are kept; a full Check
// passes.
func TestGCProc_WritersWhileGC(t *testing.T) {
	const (
		procs = 8
		revs  = 6
	)
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			// A manifest write must finish within grace/4 of its commit
			// check (GC.md); on a loaded 2-core machine an S3 PUT can take
			// longer than the 500 ms a 2 s grace leaves, so S3 gets more.
			grace := 2 * time.Second
			if kind == "s3" {
				grace = 8 * time.Second
			}
			store, base := mpStore(t, kind)
			if store == nil {
				t.Skip("S3 test server not configured")
			}
			ctx := context.Background()
			start := time.Now()
			var pushers []*gcpProc
			var specs []gcpSpec
			for i := range procs {
				mem := filepath.Join(t.TempDir(), "memory")
				writeImage(t, mem, 64, 500+uint64(i))
				s := gcpSpec{Op: "push", StoreDir: base.StoreDir, Prefix: base.Prefix, Cache: t.TempDir(), Grace: grace, Gate: true, Pause: 300 * time.Millisecond}
				for j := range revs {
					if j > 0 {
						rewritePages(t, mem, 12, uint64(1000*i+j))
					}
					dir := filepath.Join(t.TempDir(), "src")
					writeGCPRevision(t, dir, mem, i, j)
					p := gcpPush{Name: fmt.Sprintf("own%d", i), Tag: "latest", Src: dir}
					if j%2 == 1 {
						p = gcpPush{Name: fmt.Sprintf("shared%d", i%2), Tag: fmt.Sprintf("c%dr%d", i, j), Src: dir}
					}
					s.Pushes = append(s.Pushes, p)
				}
				specs = append(specs, s)
			}
			gcSpec := gcpSpec{
				Op: "gc", StoreDir: base.StoreDir, Prefix: base.Prefix, Cache: t.TempDir(), Grace: grace, Gate: true,
				Loop: true, Interval: 200 * time.Millisecond, KeepLast: 2,
			}
			gcProc := startGCP(t, gcSpec)
			for _, s := range specs {
				pushers = append(pushers, startGCP(t, s))
			}
			gcProc.release()
			for _, p := range pushers {
				p.release()
			}

			var acked []gcpRevision
			retries := 0
			for i, p := range pushers {
				lines, err := p.wait()
				if err != nil {
					t.Errorf("pusher %d: %v", i, err)
				}
				n := 0
				for _, l := range lines {
					f := strings.Fields(l)
					switch {
					case len(f) == 2 && f[0] == "retry":
						retries++
					case len(f) == 4 && f[0] == "ok":
						name, tag, _ := strings.Cut(f[1], ":")
						at, _ := strconv.ParseInt(f[3], 10, 64)
						push := specs[i].Pushes[n]
						if push.Name != name || push.Tag != tag {
							t.Fatalf("pusher %d acknowledged %s, expected %s:%s", i, f[1], push.Name, push.Tag)
						}
						acked = append(acked, gcpRevision{name: name, tag: tag, digest: f[2], src: push.Src, pushedAt: at})
						n++
					}
				}
			}
			pushSecs := time.Since(start).Seconds()
			lines, err := gcProc.wait()
			if err != nil {
				for i, p := range pushers {
					for _, l := range strings.Split(p.stderr.String(), "\n") {
						if strings.Contains(l, "deadline") {
							t.Logf("on gc failure: pusher %d: %s", i, l)
						}
					}
				}
				for _, k := range storeKeys(t, store, "gc/deleted/") {
					data, _, _ := store.GetBytes(ctx, k, 1<<20)
					if strings.Contains(err.Error(), "recipe ") {
						id := strings.Fields(err.Error()[strings.Index(err.Error(), "recipe ")+7:])[0]
						if strings.Contains(string(data), id) {
							t.Logf("on gc failure: tombstone %s names %s: %s", k, id, data)
						}
					}
				}
				t.Fatalf("gc loop: %v", err)
			}
			var during gcTotals
			during.add(gcReports(t, lines)...)
			if t.Failed() {
				t.FailNow()
			}

			// Finish: nothing runs any more, so gc may look ahead.
			var after gcTotals
			gcr := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithGCGrace(grace))
			defer gcr.Close()
			for k := 1; k <= 2; k++ {
				after.add(*gcAt(t, gcr, time.Duration(3*k)*grace, registry.GCOptions{KeepLast: 2, Grace: grace}))
			}
			checkClean(t, store)

			// Every acknowledged revision is kept or was dropped by
			// retention behind two newer kept revisions.
			reader := newRegistry(t, store)
			cat, err := reader.GetCatalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byRepo := map[string][]gcpRevision{}
			for _, a := range acked {
				byRepo[a.name] = append(byRepo[a.name], a)
			}
			dropped, droppedTags, pulls := 0, 0, 0
			for name, list := range byRepo {
				kept := keptDigests(t, store, name)
				if len(kept) != 2 {
					t.Errorf("%s: %d revisions kept, want 2", name, len(kept))
				}
				cutoff := int64(-1) // the older kept revision's push time
				for _, d := range kept {
					m, err := reader.PullManifest(ctx, name, "sha256:"+d)
					if err != nil {
						t.Fatalf("%s@%s: %v", name, d, err)
					}
					if at := m.PushedAt.UnixNano(); cutoff < 0 || at < cutoff {
						cutoff = at
					}
				}
				tags, err := reader.ListTags(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range list {
					if slices.Contains(kept, a.digest) {
						pullDirSame(t, reader, name, "sha256:"+a.digest, a.src)
						pulls++
						if a.tag != "latest" {
							if got := tagDigest(t, store, name, a.tag); got != a.digest {
								t.Errorf("%s:%s names %q, acknowledged %s", name, a.tag, got, a.digest)
							}
							if repo := cat.Repositories[name]; repo == nil || repo.Tags[a.tag] != a.digest {
								t.Errorf("catalog lacks %s:%s", name, a.tag)
							}
						}
						continue
					}
					dropped++
					if len(kept) < 2 || a.pushedAt >= cutoff {
						t.Errorf("acknowledged %s:%s (%s, pushed %d) is gone, but is not older than two kept revisions (kept %v, older at %d)",
							name, a.tag, a.digest, a.pushedAt, kept, cutoff)
					}
					if a.tag != "latest" {
						droppedTags++
						if slices.Contains(tags, a.tag) {
							t.Errorf("%s:%s still tagged though its revision was dropped", name, a.tag)
						}
						if repo := cat.Repositories[name]; repo != nil && repo.Tags[a.tag] != "" {
							t.Errorf("catalog still lists dropped %s:%s", name, a.tag)
						}
					}
				}
				// A single writer moved "latest": it names its last push.
				if strings.HasPrefix(name, "own") {
					last := list[len(list)-1]
					if got := tagDigest(t, store, name, "latest"); got != last.digest {
						t.Errorf("%s:latest names %q, last acknowledged %s", name, got, last.digest)
					} else if repo := cat.Repositories[name]; repo == nil || repo.Tags["latest"] != last.digest {
						t.Errorf("catalog: %s:latest is not %s", name, last.digest)
					}
				}
			}
			if tagsDeleted := during.tagsDeleted + after.tagsDeleted; droppedTags > tagsDeleted {
				t.Errorf("%d acknowledged tags dropped, but gc reports only %d tags deleted", droppedTags, tagsDeleted)
			}
			t.Logf("%s: %d pushes acknowledged in %.1fs (%d ErrConcurrentGC retries), %d dropped by retention (%d tags), %d kept pulled byte-exact",
				kind, len(acked), pushSecs, retries, dropped, droppedTags, pulls)
			t.Logf("during the pushes: %v", during)
			t.Logf("afterwards: %v", after)
			if len(acked) != procs*revs {
				t.Errorf("%d pushes acknowledged, want %d", len(acked), procs*revs)
			}
			if during.runs < 2 {
				t.Errorf("only %d gc runs overlapped the pushes", during.runs)
			}
			if during.packsDeleted+after.packsDeleted == 0 {
				t.Error("no pack was deleted")
			}
		})
	}
}

// TestGCProc_Killed kills a gc process with SIGKILL at seeded random store
// calls (and once right before its first pack deletion), on a store with
// several revisions of two repositories and a plan old enough to execute:
// each run's clock is ahead of the last by 3 T. Before each run a new
// revision of each repository is pushed. After each kill a full Check
// passes and every kept revision pulls byte-exact (the newest two of each
// repository always kept); two final runs complete and leave exactly two
// revisions per repository, checked the same way.
func TestGCProc_Killed(t *testing.T) {
	const (
		runs  = 8
		grace = time.Hour
	)
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			store, base := mpStore(t, kind)
			if store == nil {
				t.Skip("S3 test server not configured")
			}
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(23, 29))
			pusher := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithPackSize(1<<20), registry.WithGCGrace(grace))
			defer pusher.Close()
			reader := newRegistry(t, store) // one node pulling throughout
			dryNode := t.TempDir()          // the node estimating the runs' calls
			gcCache := t.TempDir()          // the gc process's node index, across kills

			srcs := map[string]string{}      // digest -> folder
			history := map[string][]string{} // repo -> digests, oldest first
			mems := map[string]string{}      // repo -> working memory image
			push := func(name, tag string, n int) {
				t.Helper()
				mem, ok := mems[name]
				if !ok {
					mem = filepath.Join(t.TempDir(), "memory")
					writeImage(t, mem, 64, uint64(len(name))*77)
					mems[name] = mem
				} else {
					rewritePages(t, mem, 16, uint64(100*len(name)+n))
				}
				dir := filepath.Join(t.TempDir(), "src")
				writeGCPRevision(t, dir, mem, len(name), n)
				m, _, err := pusher.PushDir(ctx, dir, name, tag, nil)
				if err != nil {
					t.Fatalf("push %s:%s: %v", name, tag, err)
				}
				data, _ := m.Marshal()
				d := manifest.Digest(data)
				srcs[d] = dir
				history[name] = append(history[name], d)
			}
			// vm moves "latest" (recipes patched against the previous
			// revision); app gets a tag per revision.
			pushBoth := func(n int) {
				push("vm", "latest", n)
				push("app", fmt.Sprintf("r%d", n), n)
			}
			// verify: Check reads everything, the newest two revisions of
			// each repository are there, and every revision there pulls
			// byte-exact.
			verify := func(what string) {
				t.Helper()
				checkStore(t, store, true)
				for _, name := range []string{"vm", "app"} {
					kept := keptDigests(t, store, name)
					h := history[name]
					for _, d := range h[len(h)-2:] {
						if !slices.Contains(kept, d) {
							t.Errorf("%s: %s lost one of the two newest revisions %s", what, name, d)
						}
					}
					for _, d := range kept {
						if srcs[d] == "" {
							t.Errorf("%s: %s@%s is no revision pushed", what, name, d)
							continue
						}
						pullDirSame(t, reader, name, "sha256:"+d, srcs[d])
					}
					tags, err := reader.ListTags(ctx, name)
					if err != nil {
						t.Fatal(err)
					}
					for _, tag := range tags {
						d := tagDigest(t, store, name, tag)
						if srcs[d] == "" {
							t.Errorf("%s: %s:%s names %s, no revision pushed", what, name, tag, d)
							continue
						}
						pullDirSame(t, reader, name, tag, srcs[d])
					}
				}
				if t.Failed() {
					t.FailNow()
				}
			}
			spec := func(now time.Time) gcpSpec {
				return gcpSpec{Op: "gc", StoreDir: base.StoreDir, Prefix: base.Prefix, Cache: gcCache, Grace: grace, KeepLast: 2, Now: now.UnixNano()}
			}
			n := 0
			for ; n < 3; n++ {
				pushBoth(n)
			}
			// The plan the first killed run finds due.
			var totals gcTotals
			clock := time.Now().Add(3 * grace)
			first := gcAt(t, newRegistry(t, store), 3*grace, registry.GCOptions{KeepLast: 2, Grace: grace})
			totals.add(*first)
			if first.Plan == "" {
				t.Fatalf("setup run wrote no plan: %+v", first)
			}

			var at []string
			var kills, estTotal int
			var realCalls []string
			defer func() {
				t.Logf("%s: %d runs, %d killed; kill points %q; calls of unkilled runs %v (estimated ~%d per run)",
					kind, len(at), kills, at, realCalls, estTotal/max(len(at), 1))
			}()
			for run := range runs {
				pushBoth(n)
				n++
				if countKeys(t, store, "gc/plans/") == 0 {
					// Earlier kills left no plan: make one the run finds due.
					clock = clock.Add(3 * grace)
					at0 := clock
					totals.add(*gcAt(t, newRegistry(t, store), time.Until(at0), registry.GCOptions{KeepLast: 2, Grace: grace}))
				}
				clock = clock.Add(3 * grace)
				if now := time.Now().Add(3 * grace); clock.Before(now) {
					clock = now
				}
				s := spec(clock)
				// Estimate the run's store calls: a dry run from a node
				// of its own, plus what it would delete and write.
				dry := registry.New(store, registry.WithCacheDir(dryNode), registry.WithGCGrace(grace))
				before := store.Stats()
				at0 := clock
				rep, err := dry.GC(ctx, registry.GCOptions{KeepLast: 2, Grace: grace, DryRun: true, Now: func() time.Time { return at0 }})
				after := store.Stats()
				_ = dry.Close()
				if err != nil {
					t.Fatalf("dry run: %v", err)
				}
				calls := int(after.PutRequests + after.GetRequests + after.OtherRequests - before.PutRequests - before.GetRequests - before.OtherRequests)
				est := calls + 3*rep.TagsDeleted + rep.ManifestsDeleted + rep.PacksDeleted + rep.RecipesDeleted + rep.DescriptorsDeleted + rep.PlansExecuted + 4*rep.PacksRewritten + 4
				estTotal += est
				if run == runs-1 && rep.PacksDeleted > 0 {
					// Deterministically: tombstone written, packs not yet deleted.
					s.KillOp, s.KillKey = "delete", "blobs/packs/"
				} else {
					s.KillAt = 1 + rng.Int64N(int64(est))
					s.KillAfter = rng.IntN(2) == 0
				}
				lines, err := startGCP(t, s).wait()
				var where string
				switch {
				case err == nil:
					reps := gcReports(t, lines)
					totals.add(reps...)
					where = fmt.Sprintf("none (call %d)", s.KillAt)
					if l := lines[len(lines)-1]; strings.HasPrefix(l, "calls ") {
						realCalls = append(realCalls, strings.TrimPrefix(l, "calls "))
					}
				case strings.Contains(err.Error(), "signal: killed"):
					kills++
					_, where, _ = strings.Cut(err.Error(), "killed ")
					where = strings.TrimSpace(where)
					if base.Prefix != "" {
						where = strings.ReplaceAll(where, strings.TrimSuffix(base.Prefix, "/")+"/", "")
					}
					if i := strings.Index(where, "/"); i > 0 { // keep the kind of key
						if j := strings.IndexAny(where[i+1:], "/."); j > 0 {
							where = where[:i+1+j]
						}
					}
					if s.KillAt > 0 {
						where = fmt.Sprintf("%d/%d %s", s.KillAt, est, where)
					}
				default:
					t.Fatalf("run %d: gc failed without being killed: %v", run, err)
				}
				at = append(at, where)
				verify(fmt.Sprintf("run %d (killed %s)", run, where))
			}
			// Two runs that complete: whatever a kill left is finished.
			for k := range 2 {
				clock = clock.Add(3 * grace)
				lines, err := startGCP(t, spec(clock)).wait()
				if err != nil {
					t.Fatalf("final run %d: %v", k, err)
				}
				totals.add(gcReports(t, lines)...)
			}
			verify("final")
			for _, name := range []string{"vm", "app"} {
				if kept := keptDigests(t, store, name); len(kept) != 2 {
					t.Errorf("%s: %d revisions after the final runs, want 2", name, len(kept))
				}
			}
			if got := countKeys(t, store, "gc/plans/"); got > 1 {
				t.Errorf("%d plans left after two complete runs", got)
			}
			t.Logf("%s: %d pushes; completed runs: %v", kind, 2*n, totals)
			if kills == 0 {
				t.Error("no run was killed")
			}
		})
	}
}
