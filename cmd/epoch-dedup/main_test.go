package main_test

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is the epoch-dedup binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "epoch-dedup-cli-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "epoch-dedup")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build epoch-dedup: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary as a user would, with a clean environment: its own
// HOME, a folder store and an index cache, all in temp folders.
type cli struct {
	t     *testing.T
	store string
	env   map[string]string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	home := t.TempDir()
	c := &cli{t: t, store: filepath.Join(t.TempDir(), "store"), env: map[string]string{}}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "EPOCH_") || strings.HasPrefix(k, "XDG_") || k == "COCOON_ROOT_DIR" || k == "HOME" {
			continue
		}
		c.env[k] = v
	}
	c.env["HOME"] = home
	c.env["EPOCH_CACHE_DIR"] = filepath.Join(home, "cache")
	c.env["EPOCH_STORE"] = c.store
	return c
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	cmd := exec.Command(bin, args...)
	for k, v := range c.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("run %v: %v", args, err)
		}
		res.code = ee.ExitCode()
	}
	return res
}

// ok runs and fails the test unless the command succeeds.
func (c *cli) ok(args ...string) result {
	c.t.Helper()
	res := c.run(args...)
	if res.code != 0 {
		c.t.Fatalf("epoch-dedup %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// jsonOK runs with --json and decodes stdout into v.
func (c *cli) jsonOK(v any, args ...string) {
	c.t.Helper()
	res := c.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(res.stdout), v); err != nil {
		c.t.Fatalf("epoch-dedup %s --json: %v\n%s", strings.Join(args, " "), err, res)
	}
}

// fails runs and checks the exit code and that stderr is one line naming
// the error, without usage text or a stack trace.
func (c *cli) fails(code int, want string, args ...string) result {
	c.t.Helper()
	res := c.run(args...)
	if res.code != code {
		c.t.Fatalf("epoch-dedup %s: want exit %d: %s", strings.Join(args, " "), code, res)
	}
	checkOneLineError(c.t, res, want)
	return res
}

func checkOneLineError(t *testing.T, res result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "epoch-dedup: ") {
		t.Fatalf("want one error line on stderr: %s", res)
	}
	for _, bad := range []string{"goroutine ", "panic", "Usage:", ".go:"} {
		if strings.Contains(res.stderr, bad) {
			t.Fatalf("stderr has %q: %s", bad, res)
		}
	}
	if !strings.Contains(res.stderr, want) {
		t.Fatalf("stderr does not mention %q: %s", want, res)
	}
}

// summary is the --json output of push and pull.
type summary struct {
	Op              string  `json:"op"`
	Name            string  `json:"name"`
	Tag             string  `json:"tag"`
	Digest          string  `json:"digest"`
	Files           int64   `json:"files"`
	RawBytes        *int64  `json:"raw_bytes"`
	NewBytes        *int64  `json:"new_bytes"`
	UploadedBytes   *int64  `json:"uploaded_bytes"`
	DownloadedBytes *int64  `json:"downloaded_bytes"`
	ReusedBytes     *int64  `json:"reused_bytes"`
	Chunks          *int64  `json:"chunks"`
	NewChunks       *int64  `json:"new_chunks"`
	Seconds         float64 `json:"seconds"`
}

func (s summary) check(t *testing.T, op, name, tag string, raw int64) {
	t.Helper()
	for field, p := range map[string]*int64{
		"raw_bytes": s.RawBytes, "new_bytes": s.NewBytes, "uploaded_bytes": s.UploadedBytes,
		"downloaded_bytes": s.DownloadedBytes, "reused_bytes": s.ReusedBytes, "chunks": s.Chunks, "new_chunks": s.NewChunks,
	} {
		if p == nil {
			t.Fatalf("summary lacks %s: %+v", field, s)
		}
	}
	if s.Op != op || s.Name != name || s.Tag != tag || len(s.Digest) != 64 {
		t.Fatalf("summary names %s %s:%s digest %q, want %s %s:%s", s.Op, s.Name, s.Tag, s.Digest, op, name, tag)
	}
	if *s.RawBytes != raw {
		t.Fatalf("raw_bytes %d, want %d", *s.RawBytes, raw)
	}
}

// writeFiles makes a folder of test files: random data, a sparse
// memory-like file with zero pages and text pages, and a small JSON file.
// It returns the folder and the total size.
func writeFiles(t *testing.T, dir string, seed uint64) int64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	writeFile(t, filepath.Join(dir, "disk.raw"), random)
	mem := make([]byte, 2<<20)
	for p := 0; p < len(mem)/4096; p++ {
		switch p % 3 {
		case 0: // zero page
		case 1:
			for i := range 4096 {
				mem[p*4096+i] = byte(rng.Uint32())
			}
		default:
			copy(mem[p*4096:(p+1)*4096], bytes.Repeat([]byte(fmt.Sprintf("page %d ", p)), 4096))
		}
	}
	writeFile(t, filepath.Join(dir, "memory-ranges"), mem)
	writeFile(t, filepath.Join(dir, "config.json"), []byte(`{"cpus":2,"memory":"2MiB"}`))
	return int64(len(random) + len(mem) + len(`{"cpus":2,"memory":"2MiB"}`))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameTree fails unless every regular file of want is in got with the same
// bytes, and got has no other files.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	wantNames := listFiles(t, want)
	gotNames := listFiles(t, got)
	if strings.Join(wantNames, ",") != strings.Join(gotNames, ",") {
		t.Fatalf("%s has %v, want %v", got, gotNames, wantNames)
	}
	for _, n := range wantNames {
		a, err := os.ReadFile(filepath.Join(want, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs from %s", filepath.Join(got, n), filepath.Join(want, n))
		}
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// packFiles lists the pack files of a folder store.
func packFiles(t *testing.T, store string) []string {
	t.Helper()
	var packs []string
	err := filepath.WalkDir(filepath.Join(store, "blobs", "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			packs = append(packs, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(packs) == 0 {
		t.Fatalf("no packs in %s", store)
	}
	return packs
}

// packKey is the store key of a pack file of a folder store.
func packKey(store, path string) string {
	rel, _ := filepath.Rel(store, path)
	return filepath.ToSlash(rel)
}

func randomSuffix() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestHelp(t *testing.T) {
	c := newCLI(t)
	root := c.ok("--help")
	for _, want := range []string{"EPOCH_STORE", "EPOCH_S3_ACCESS_KEY", "COCOON_ROOT_DIR", "EPOCH_CACHE_DIR", "s3://BUCKET", "Examples:"} {
		if !strings.Contains(root.stdout, want) {
			t.Errorf("root help lacks %q:\n%s", want, root.stdout)
		}
	}
	for _, cmd := range []string{"push", "pull", "ls", "inspect", "tag", "rm", "check", "stats", "demo"} {
		res := c.ok(cmd, "--help")
		for _, want := range []string{"Examples:", "epoch-dedup " + cmd, "--store", "--json"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, res.stdout)
			}
		}
	}
}

func TestPushPullDir(t *testing.T) {
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "src")
	raw := writeFiles(t, src, 1)

	var push summary
	c.jsonOK(&push, "push", "--dir", src, "files:v1")
	push.check(t, "push", "files", "v1", raw)
	if *push.UploadedBytes == 0 || *push.NewChunks == 0 {
		t.Fatalf("first push moved nothing: %+v", push)
	}

	out := filepath.Join(t.TempDir(), "out")
	var pull summary
	c.jsonOK(&pull, "pull", "files:v1", "--dir", out)
	pull.check(t, "pull", "files", "v1", raw)
	if pull.Digest != push.Digest {
		t.Fatalf("pull digest %s, push %s", pull.Digest, push.Digest)
	}
	sameTree(t, src, out)

	// A second revision with one page changed uploads little.
	f, err := os.OpenFile(filepath.Join(src, "disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xab}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var push2 summary
	c.jsonOK(&push2, "push", "--dir", src, "files", "-t", "v2")
	push2.check(t, "push", "files", "v2", raw)
	if *push2.NewBytes*4 > raw || *push2.UploadedBytes*4 > *push.UploadedBytes {
		t.Fatalf("second push: %d new bytes, %d uploaded (first %d): no dedup", *push2.NewBytes, *push2.UploadedBytes, *push.UploadedBytes)
	}
	// Human output: one summary line.
	res := c.ok("push", "-q", "--dir", src, "files:v2")
	if lines := strings.Split(strings.TrimSpace(res.stdout), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "pushed files:v2") || !strings.Contains(lines[0], "ratio") {
		t.Fatalf("push summary: %s", res)
	}

	out2 := filepath.Join(t.TempDir(), "out2")
	res = c.ok("pull", "files:v2", "--dir", out2)
	if !strings.HasPrefix(res.stdout, "pulled files:v2") {
		t.Fatalf("pull summary: %s", res)
	}
	sameTree(t, src, out2)

	// ls, inspect, tag, rm, stats, check.
	var repos struct {
		Repositories []struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		} `json:"repositories"`
	}
	c.jsonOK(&repos, "ls")
	if len(repos.Repositories) != 1 || repos.Repositories[0].Name != "files" || strings.Join(repos.Repositories[0].Tags, ",") != "v1,v2" {
		t.Fatalf("ls: %+v", repos)
	}
	var inspect struct {
		Digest string `json:"digest"`
		Stats  struct {
			RawBytes int64 `json:"raw_bytes"`
			Layers   []struct {
				Filename  string `json:"filename"`
				Chunks    int64  `json:"chunks"`
				ZeroBytes int64  `json:"zero_bytes"`
				Chunker   string `json:"chunker"`
				Recipe    string `json:"recipe"`
			} `json:"layers"`
		} `json:"stats"`
	}
	c.jsonOK(&inspect, "inspect", "files:v2")
	if len(inspect.Digest) != 64 || inspect.Stats.RawBytes != raw || len(inspect.Stats.Layers) != 3 {
		t.Fatalf("inspect: %+v", inspect)
	}
	for _, l := range inspect.Stats.Layers {
		if l.Recipe == "" || l.Chunks == 0 {
			t.Fatalf("inspect layer %+v", l)
		}
		if l.Filename == "memory-ranges" && l.ZeroBytes == 0 {
			t.Fatalf("memory-ranges has no zero bytes: %+v", l)
		}
	}
	if res := c.ok("inspect", "files:v2"); !strings.Contains(res.stdout, "memory-ranges") || !strings.Contains(res.stdout, "CHUNKER") {
		t.Fatalf("inspect: %s", res)
	}

	c.ok("tag", "files:v2", "files:prod")
	out3 := filepath.Join(t.TempDir(), "out3")
	c.ok("pull", "-q", "files:prod", "--dir", out3)
	sameTree(t, src, out3)

	c.ok("rm", "files:v1")
	var tags struct {
		Tags []struct {
			Tag    string `json:"tag"`
			Digest string `json:"digest"`
		} `json:"tags"`
	}
	c.jsonOK(&tags, "ls", "files")
	if len(tags.Tags) != 2 || tags.Tags[0].Tag != "prod" || tags.Tags[1].Tag != "v2" {
		t.Fatalf("ls files after rm: %+v", tags)
	}
	c.fails(1, "manifest not found", "pull", "files:v1", "--dir", out3)
	c.fails(2, "NAME:TAG", "rm", "files")

	var st struct {
		RawBytes    int64   `json:"raw_bytes"`
		StoredBytes int64   `json:"stored_bytes"`
		Packs       int64   `json:"packs"`
		Chunks      int64   `json:"chunks"`
		DedupRatio  float64 `json:"dedup_ratio"`
	}
	c.jsonOK(&st, "stats")
	if st.RawBytes != 2*raw || st.StoredBytes == 0 || st.Packs == 0 || st.Chunks == 0 || st.DedupRatio <= 1 {
		t.Fatalf("stats: %+v", st)
	}
	if res := c.ok("check", "--read-data"); !strings.Contains(res.stdout, "no problems") {
		t.Fatalf("check: %s", res)
	}
}
