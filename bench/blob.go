package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// BlobConfig sets up the blob benchmark of the chunked store issue.
type BlobConfig struct {
	// Size of the memory-like file (default 1 GiB): 4 KiB pages, half
	// random, half zero.
	Size int64
	// Change is the share of pages the second version rewrites at random
	// places (default 0.02).
	Change float64
	// RSSSize is the size of the file pushed and pulled in a child process
	// to measure peak memory (default 4 GiB; 0 keeps the default, <0 skips).
	RSSSize int64
	// WorkDir holds the generated files and the folder store (default a
	// temporary dir, removed afterwards).
	WorkDir string
	// Exe is the epoch-dedup binary for the child processes (default the
	// running executable).
	Exe string
	// Rounds is how many times the timed pushes and restic's backups run,
	// each round on a fresh store and a fresh repository, epoch-dedup and
	// restic taking turns (default 3). Timings are the median; the
	// report gives the range. One push on this VM moves by a third from
	// run to run, restic's first backup between 3.4 and 5.0 s.
	Rounds int
	// S3 is an S3 store to measure PullBlob against a plain GET; nil skips.
	S3 *objectstore.Config
	// Log receives progress lines; nil is silent.
	Log func(string)
}

// Timed is one measured operation.
type Timed struct {
	Seconds  float64 `json:"seconds"` // the median of Runs when there are several
	Bytes    int64   `json:"bytes"`   // bytes sent or stored by the operation
	MaxRSSKB int64   `json:"max_rss_kb,omitempty"`
	// Runs are the seconds of each round (BlobConfig.Rounds), in order.
	Runs []float64 `json:"runs,omitempty"`
}

// rounds folds the rounds' measurements of one operation into one: the
// median time, the first round's bytes and memory, every round's time.
func rounds(ts []Timed) Timed {
	if len(ts) == 0 {
		return Timed{}
	}
	out := ts[0]
	out.Runs = make([]float64, len(ts))
	for i, t := range ts {
		out.Runs[i] = t.Seconds
	}
	sorted, mid := slices.Sorted(slices.Values(out.Runs)), len(ts)/2
	out.Seconds = sorted[mid]
	if len(sorted)%2 == 0 {
		out.Seconds = (sorted[mid-1] + sorted[mid]) / 2
	}
	return out
}

// BlobResult holds every number of the blob benchmark.
type BlobResult struct {
	Machine    string  `json:"machine"`
	Size       int64   `json:"size"`
	Change     float64 `json:"change"`
	LowerBound int64   `json:"lower_bound_bytes"` // zstd size of the rewritten pages
	FirstPush  Timed   `json:"first_push"`
	SecondPush Timed   `json:"second_push"`
	RePush     Timed   `json:"repush_new_file"`

	ResticFirst  *Timed `json:"restic_first,omitempty"`
	ResticSecond *Timed `json:"restic_second,omitempty"`
	ResticForce  *Timed `json:"restic_force,omitempty"`

	RSSPush *Timed `json:"rss_push,omitempty"`
	RSSPull *Timed `json:"rss_pull,omitempty"`
	RSSSize int64  `json:"rss_size,omitempty"`

	S3PlainGet     *Timed `json:"s3_plain_get,omitempty"`      // body discarded
	S3PlainGetFile *Timed `json:"s3_plain_get_file,omitempty"` // body written to a file and fsynced
	S3PullBlob     *Timed `json:"s3_pull_blob,omitempty"`

	S3Snapshot *SnapshotPull `json:"s3_snapshot,omitempty"`
}

func (c *BlobConfig) defaults() error {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Change == 0 {
		c.Change = 0.02
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Rounds < 0 {
		return fmt.Errorf("rounds %d: want at least 1", c.Rounds)
	}
	if c.RSSSize == 0 {
		c.RSSSize = 4 << 30
	}
	if c.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Exe = exe
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	return nil
}

// RunBlob measures PushBlob and PullBlob on a memory-like file: dedup of a
// second version, speed against restic, peak memory on a large file, and
// PullBlob from S3 against a plain GET of the same size.
func RunBlob(ctx context.Context, cfg BlobConfig) (*BlobResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	work := cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "epoch-bench-*")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		work = dir
	}
	res := &BlobResult{Machine: Machine(), Size: cfg.Size, Change: cfg.Change}

	v1 := snapgen.NewMemory(snapgen.MemorySpec{Size: cfg.Size, ZeroFraction: 0.5, Compressibility: 0, Seed: 1})
	v2 := v1.Next(snapgen.MemoryChange{DirtyFraction: cfg.Change}, 2)
	// Named as Cocoon names guest memory, so each gets the page chunker.
	f1, f2, f3 := filepath.Join(work, "v1", "memory-ranges"), filepath.Join(work, "v2", "memory-ranges"), filepath.Join(work, "v2-copy", "memory-ranges")
	for _, f := range []string{f1, f2, f3} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
	}
	cfg.Log("generating " + humanBytes(cfg.Size) + " files")
	for _, w := range []struct {
		m    *snapgen.Memory
		path string
	}{{v1, f1}, {v2, f2}, {v2, f3}} {
		// Dense, as a plain copy would leave them: every tool reads the zeros.
		if err := w.m.WriteFile(w.path, false); err != nil {
			return nil, err
		}
	}
	lb, err := zstdOfPages(v2, v2.NewPagesSince(v1))
	if err != nil {
		return nil, err
	}
	res.LowerBound = lb

	restic, err := exec.LookPath("restic")
	if err != nil {
		restic = ""
	}
	var ours, theirs [3][]Timed // first, second version, same content again
	for r := range cfg.Rounds {
		round := ""
		if cfg.Rounds > 1 {
			round = fmt.Sprintf(" (round %d of %d)", r+1, cfg.Rounds)
		}
		ts, err := pushRound(ctx, cfg, filepath.Join(work, fmt.Sprintf("round-%d", r)), round, f1, f2, f3)
		if err != nil {
			return nil, err
		}
		for i := range ts {
			ours[i] = append(ours[i], ts[i])
		}
		if restic == "" {
			continue
		}
		cfg.Log("restic backup (baseline)" + round)
		ts, err = runRestic(ctx, restic, filepath.Join(work, fmt.Sprintf("restic-%d", r)), f1, f2, f3)
		if err != nil {
			return nil, fmt.Errorf("restic baseline: %w", err)
		}
		for i := range ts {
			theirs[i] = append(theirs[i], ts[i])
		}
	}
	res.FirstPush, res.SecondPush, res.RePush = rounds(ours[0]), rounds(ours[1]), rounds(ours[2])
	if restic != "" {
		first, second, force := rounds(theirs[0]), rounds(theirs[1]), rounds(theirs[2])
		res.ResticFirst, res.ResticSecond, res.ResticForce = &first, &second, &force
	}

	if cfg.RSSSize > 0 {
		cfg.Log("peak memory: push and pull of " + humanBytes(cfg.RSSSize) + " in a child process")
		if err := runRSS(ctx, cfg, work, res); err != nil {
			return nil, fmt.Errorf("rss: %w", err)
		}
	}
	if cfg.S3 != nil {
		cfg.Log("S3: PullBlob against a plain GET")
		if err := runS3Pull(ctx, cfg, work, f1, res); err != nil {
			return nil, fmt.Errorf("s3 pull: %w", err)
		}
		if cfg.RSSSize > 0 {
			cfg.Log("S3: cold pull of a " + humanBytes(cfg.RSSSize) + " snapshot in a child process against plain GETs")
			if res.S3Snapshot, err = runSnapshotPull(ctx, cfg, work, cfg.RSSSize); err != nil {
				return nil, fmt.Errorf("s3 snapshot pull: %w", err)
			}
		}
	}
	return res, nil
}

// zstdOfPages is the lower bound of any store: the pages never seen before,
// compressed with zstd at its default level.
func zstdOfPages(m *snapgen.Memory, pages []int64) (int64, error) {
	return zstdOfPageSource(m.PageBytes, pages)
}

// zstdOfPageSource sums the zstd size (default level, never more than the
// page itself) of each page pageBytes fills in.
func zstdOfPageSource(pageBytes func(int64, []byte), pages []int64) (int64, error) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = enc.Close() }()
	buf := make([]byte, snapgen.PageSize)
	var total int64
	var out []byte
	for _, p := range pages {
		pageBytes(p, buf)
		out = enc.EncodeAll(buf, out[:0])
		total += int64(min(len(out), len(buf)))
	}
	return total, nil
}

// pushRound pushes the first version, the second and the second's copy
// into a fresh folder store with a fresh node index under dir, and removes
// them afterwards.
func pushRound(ctx context.Context, cfg BlobConfig, dir, round, f1, f2, f3 string) (ts [3]Timed, err error) {
	defer func() { _ = os.RemoveAll(dir) }()
	client, err := objectstore.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		return ts, err
	}
	reg := registry.New(client, registry.WithCacheDir(filepath.Join(dir, "cache")))
	defer func() { _ = reg.Close() }()
	for i, step := range []struct{ name, path string }{
		{"first push", f1}, {"second version", f2}, {"same content, new file", f3},
	} {
		settle()
		cfg.Log("epoch-dedup push: " + step.name + round)
		start := time.Now()
		_, st, err := reg.PushBlobStats(ctx, step.path, nil)
		if err != nil {
			return ts, err
		}
		ts[i] = Timed{Seconds: time.Since(start).Seconds(), Bytes: st.UploadedBytes}
	}
	return ts, nil
}

// runRestic backs up the first version, the second under the first's
// name, and the second's copy with --force into a fresh repository under
// dir, and removes it afterwards.
func runRestic(ctx context.Context, restic, dir, f1, f2, f3 string) (ts [3]Timed, err error) {
	defer func() { _ = os.RemoveAll(dir) }()
	repo := filepath.Join(dir, "repo")
	env := append(os.Environ(), "RESTIC_REPOSITORY="+repo, "RESTIC_PASSWORD=bench", "RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"))
	run := func(args ...string) (Timed, error) {
		settle()
		before := dirSize(repo)
		resetPeakRSS()
		start := time.Now()
		cmd := exec.CommandContext(ctx, restic, args...) //nolint:gosec // restic is exec.LookPath("restic"); args are built here
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return Timed{}, fmt.Errorf("restic %s: %w: %s", strings.Join(args, " "), err, lastLine(out))
		}
		return Timed{Seconds: time.Since(start).Seconds(), Bytes: dirSize(repo) - before, MaxRSSKB: maxRSS(cmd)}, nil
	}
	if _, err := run("init"); err != nil {
		return ts, err
	}
	if ts[0], err = run("backup", "--host", "bench", f1); err != nil {
		return ts, err
	}
	// The second version under the first version's name, as a VM save
	// overwrites its memory file: restic sees a changed file.
	if err := os.Rename(f1, f1+".orig"); err != nil {
		return ts, err
	}
	restore := func() error {
		_ = os.Remove(f1)
		return os.Rename(f1+".orig", f1)
	}
	if err := os.Link(f2, f1); err != nil {
		return ts, errors.Join(err, restore())
	}
	ts[1], err = run("backup", "--host", "bench", f1)
	if err != nil {
		return ts, errors.Join(err, restore())
	}
	if err := restore(); err != nil {
		return ts, err
	}
	ts[2], err = run("backup", "--host", "bench", "--force", f3)
	return ts, err
}

// runRSS pushes and pulls a large file in child processes and records their
// peak resident memory.
func runRSS(ctx context.Context, cfg BlobConfig, work string, res *BlobResult) error {
	big := filepath.Join(work, "rss-memory")
	m := snapgen.NewMemory(snapgen.MemorySpec{Size: cfg.RSSSize, ZeroFraction: 0.3, Compressibility: 0.5, Seed: 3})
	if err := m.WriteFile(big, true); err != nil {
		return err
	}
	defer func() { _ = os.Remove(big) }()
	store := filepath.Join(work, "rss-store")
	defer func() { _ = os.RemoveAll(store) }()
	var push childOutput
	t, err := runChild(ctx, cfg.Exe, &push, "push-blob", store, filepath.Join(work, "rss-cache-push"), big)
	if err != nil {
		return err
	}
	res.RSSPush, res.RSSSize = &t, cfg.RSSSize
	dest := filepath.Join(work, "rss.pulled")
	defer func() { _ = os.Remove(dest) }()
	var pull childOutput
	tp, err := runChild(ctx, cfg.Exe, &pull, "pull-blob", store, filepath.Join(work, "rss-cache-pull"), push.Digest, dest)
	if err != nil {
		return err
	}
	res.RSSPull = &tp
	return nil
}

// runS3Pull uploads the file once as a plain object and once through
// PushBlob, then times one plain GET of it against a cold PullBlob.
func runS3Pull(ctx context.Context, cfg BlobConfig, work, file string, res *BlobResult) error {
	s3cfg := *cfg.S3
	s3cfg.Prefix = fmt.Sprintf("bench-%d/", time.Now().UnixNano())
	client, err := objectstore.New(&s3cfg)
	if err != nil {
		return err
	}
	defer cleanPrefix(context.WithoutCancel(ctx), client)
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	_, err = client.Put(ctx, "plain/object", f, fi.Size(), objectstore.PutOptions{})
	_ = f.Close()
	if err != nil {
		return err
	}
	pusher := registry.New(client, registry.WithCacheDir(filepath.Join(work, "s3-cache-push")))
	digest, _, err := pusher.PushBlob(ctx, file)
	_ = pusher.Close()
	if err != nil {
		return err
	}

	start := time.Now()
	rc, err := client.Get(ctx, "plain/object", 0, -1)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, rc)
	_ = rc.Close()
	if err != nil {
		return err
	}
	res.S3PlainGet = &Timed{Seconds: time.Since(start).Seconds(), Bytes: n}

	// The same GET into a file, synced: what any pull must at least do to
	// leave the bytes on disk.
	start = time.Now()
	n, err = getToFile(ctx, client, "plain/object", filepath.Join(work, "plain.get"))
	if err != nil {
		return err
	}
	res.S3PlainGetFile = &Timed{Seconds: time.Since(start).Seconds(), Bytes: n}

	puller := registry.New(client, registry.WithCacheDir(filepath.Join(work, "s3-cache-pull")))
	defer func() { _ = puller.Close() }()
	dest := filepath.Join(work, "s3.pulled")
	defer func() { _ = os.Remove(dest) }()
	start = time.Now()
	st, err := puller.PullBlobStats(ctx, digest, dest, nil)
	if err != nil {
		return err
	}
	res.S3PullBlob = &Timed{Seconds: time.Since(start).Seconds(), Bytes: st.DownloadedBytes}
	return nil
}

func cleanPrefix(ctx context.Context, c *objectstore.Client) {
	var keys []string
	_ = c.List(ctx, "", func(oi objectstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	for _, k := range keys {
		_ = c.Delete(ctx, k)
	}
}

// childOutput is what "bench child" prints as JSON.
type childOutput struct {
	Digest string  `json:"digest"`
	Bytes  int64   `json:"bytes"`
	Secs   float64 `json:"seconds"`
	// PeakRSSKB is the child's own VmHWM at the end: exact, where the
	// parent's view (ru_maxrss) also counts the parent's memory at the
	// time of the vfork.
	PeakRSSKB int64 `json:"peak_rss_kb,omitempty"`
}

func runChild(ctx context.Context, exe string, out *childOutput, args ...string) (Timed, error) {
	return runChildEnv(ctx, exe, nil, out, args...)
}

// runChildEnv is runChild with env added to the child's environment.
func runChildEnv(ctx context.Context, exe string, env []string, out *childOutput, args ...string) (Timed, error) {
	cmd := exec.CommandContext(ctx, exe, append([]string{"bench", "child"}, args...)...) //nolint:gosec // exe is our own executable (os.Executable or the caller's BlobConfig.Exe); args are built here
	cmd.Stderr = os.Stderr
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	resetPeakRSS()
	data, err := cmd.Output()
	if err != nil {
		return Timed{}, fmt.Errorf("%s bench child %s: %w", exe, strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return Timed{}, fmt.Errorf("bench child output %q: %w", data, err)
	}
	rss := out.PeakRSSKB
	if rss == 0 {
		rss = maxRSS(cmd)
	}
	return Timed{Seconds: out.Secs, Bytes: out.Bytes, MaxRSSKB: rss}, nil
}

// Child runs one measured operation in this process for RunBlob's memory
// measurement: "push-blob STORE CACHE FILE", "pull-blob STORE CACHE
// DIGEST DEST" or "pull-dir STORE CACHE NAME TAG DEST". STORE is a folder,
// or "s3" for the configuration the parent put in EPOCH_BENCH_CHILD_S3.
// It prints a JSON line on stdout.
func Child(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) < 3 {
		return errors.New("bench child: want push-blob STORE CACHE FILE, pull-blob STORE CACHE DIGEST DEST or pull-dir STORE CACHE NAME TAG DEST")
	}
	client, err := childClient(args[1])
	if err != nil {
		return err
	}
	reg := registry.New(client, registry.WithCacheDir(args[2]))
	defer func() { _ = reg.Close() }()
	var out childOutput
	start := time.Now()
	switch {
	case args[0] == "push-blob" && len(args) == 4:
		digest, _, err := reg.PushBlob(ctx, args[3])
		if err != nil {
			return err
		}
		out.Digest, out.Bytes = digest, client.Stats().BytesUp
	case args[0] == "pull-blob" && len(args) == 5:
		st, err := reg.PullBlobStats(ctx, args[3], args[4], nil)
		if err != nil {
			return err
		}
		out.Digest, out.Bytes = args[3], st.DownloadedBytes
	case args[0] == "pull-dir" && len(args) == 6:
		_, st, err := reg.PullDir(ctx, args[3], args[4], args[5], nil)
		if err != nil {
			return err
		}
		out.Bytes = st.DownloadedBytes
	default:
		return fmt.Errorf("bench child: unknown %q", strings.Join(args, " "))
	}
	out.Secs = time.Since(start).Seconds()
	out.PeakRSSKB = procStatusKB("VmHWM")
	return json.NewEncoder(stdout).Encode(out)
}

func maxRSS(cmd *exec.Cmd) int64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total
}

// settle writes back every dirty page before a timed step, so no tool pays
// for the writeback of files an earlier step generated or stored (the
// first push used to start while 3 GiB of generated input was still being
// written out). The page cache itself is left alone: it holds the inputs
// for every tool alike, and dropping it needs root.
func settle() { syscall.Sync() }

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Machine describes where a benchmark ran.
func Machine() string {
	model := "unknown cpu"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = ", " + humanBytes(kb<<10) + " RAM"
		}
	}
	return fmt.Sprintf("%s/%s, %d cores, %s%s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, mem, runtime.Version())
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// getToFile GETs key into path, fsyncs it, and removes it again.
func getToFile(ctx context.Context, c *objectstore.Client, key, path string) (int64, error) {
	defer func() { _ = os.Remove(path) }()
	return getInto(ctx, c, key, path)
}
