package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkReport is the --json output of check.
type checkReport struct {
	Packs    int `json:"packs"`
	Problems []struct {
		Kind   string   `json:"kind"`
		Ref    string   `json:"ref"`
		Refs   []string `json:"refs"`
		Object string   `json:"object"`
		Detail string   `json:"detail"`
	} `json:"problems"`
}

// pushTwoRevisions pushes two revisions of a folder and returns the store's
// packs.
func pushTwoRevisions(t *testing.T, c *cli) []string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeFiles(t, src, 3)
	c.ok("push", "-q", "--dir", src, "data:v1")
	writeFile(t, filepath.Join(src, "extra.bin"), []byte(strings.Repeat("new content ", 50000)))
	c.ok("push", "-q", "--dir", src, "data:v2")
	return packFiles(t, c.store)
}

func TestCheckMissingPack(t *testing.T) {
	c := newCLI(t)
	packs := pushTwoRevisions(t, c)
	if res := c.ok("check"); !strings.Contains(res.stdout, "no problems found") {
		t.Fatalf("check of a sound store: %s", res)
	}
	victim := packs[0]
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	key := packKey(c.store, victim)
	res := c.fails(3, "problem", "check")
	if !strings.Contains(res.stdout, "missing-pack") || !strings.Contains(res.stdout, key) {
		t.Fatalf("check does not name the missing pack %s: %s", key, res)
	}
	res = c.run("check", "--json")
	if res.code != 3 {
		t.Fatalf("check --json: %s", res)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v: %s", err, res)
	}
	found := false
	for _, p := range rep.Problems {
		if p.Kind == "missing-pack" && p.Object == key && p.Ref != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("check --json lacks missing-pack %s: %+v", key, rep)
	}
}

func TestCheckCorruptPack(t *testing.T) {
	c := newCLI(t)
	packs := pushTwoRevisions(t, c)
	victim := packs[len(packs)-1]
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	// Flip bytes inside the blocks, not the size: a stat cannot see it.
	for i := len(data) / 3; i < len(data)/3+64; i++ {
		data[i] ^= 0xff
	}
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, victim, data)
	key := packKey(c.store, victim)

	c.ok("check") // without --read-data packs are only stat-checked
	res := c.fails(3, "problem", "check", "--read-data")
	if !strings.Contains(res.stdout, "corrupt-") || !strings.Contains(res.stdout, key) {
		t.Fatalf("check --read-data does not name the corrupt pack %s: %s", key, res)
	}
	// A pull of what needs it fails, and never leaves a file behind.
	out := filepath.Join(t.TempDir(), "out")
	c.env["EPOCH_CACHE_DIR"] = filepath.Join(t.TempDir(), "other-node")
	for _, tag := range []string{"v1", "v2"} {
		if res := c.run("pull", "data:"+tag, "--dir", out); res.code != 0 {
			checkOneLineError(t, res, "")
		}
	}
}

func TestBadInput(t *testing.T) {
	c := newCLI(t)
	empty := t.TempDir()
	cases := []struct {
		name string
		code int
		want string
		args []string
	}{
		{"unknown snapshot", 1, "nosuch", []string{"--root", empty, "push", "nosuch"}},
		{"unknown tag", 1, "manifest not found", []string{"pull", "nosuch:v9"}},
		{"unknown tag into folder", 1, "manifest not found", []string{"pull", "nosuch", "--dir", filepath.Join(empty, "out")}},
		{"inspect unknown", 1, "manifest not found", []string{"inspect", "nosuch"}},
		{"rm unknown", 1, "manifest not found", []string{"rm", "nosuch:v1"}},
		{"tag unknown", 1, "manifest not found", []string{"tag", "nosuch", "other"}},
		{"push dir missing", 1, "no such file", []string{"push", "--dir", filepath.Join(empty, "missing"), "x:v1"}},
		{"bad tag push", 2, "vm:../x", []string{"push", "vm:../x"}},
		{"bad tag pull", 2, "vm:../x", []string{"pull", "vm:../x"}},
		{"bad name", 2, "invalid name", []string{"inspect", "../etc"}},
		{"bad -t", 2, "invalid name", []string{"push", "vm", "-t", "../x"}},
		{"no args", 2, "accepts 1 arg", []string{"push"}},
		{"too many args", 2, "accepts", []string{"ls", "a", "b"}},
		{"unknown flag", 2, "unknown flag", []string{"pull", "--bogus", "vm"}},
		{"unknown command", 2, "unknown command", []string{"pussh"}},
		{"bad store scheme", 2, "s3://BUCKET", []string{"--store", "ftp://x/y", "ls"}},
		{"bad size", 2, "size", []string{"demo", "--memory", "lots"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.fails(tc.code, tc.want, tc.args...)
		})
	}
}

func TestS3Errors(t *testing.T) {
	t.Run("missing credentials", func(t *testing.T) {
		c := newCLI(t)
		c.env["EPOCH_S3_ENDPOINT"] = "http://127.0.0.1:1"
		c.fails(1, "EPOCH_S3_ACCESS_KEY", "--store", "s3://bucket", "ls")
		delete(c.env, "EPOCH_STORE")
		// With --store unset, EPOCH_S3_ENDPOINT selects S3 too.
		c.fails(1, "EPOCH_S3_ACCESS_KEY", "ls")
	})
	t.Run("unreachable endpoint", func(t *testing.T) {
		c := newCLI(t)
		c.env["EPOCH_S3_ENDPOINT"] = "http://127.0.0.1:1"
		c.env["EPOCH_S3_ACCESS_KEY"] = "key"
		c.env["EPOCH_S3_SECRET_KEY"] = "secret"
		start := time.Now()
		src := filepath.Join(t.TempDir(), "src")
		writeFile(t, filepath.Join(t.TempDir(), "x"), nil)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(src, "a"), []byte("hello"))
		c.fails(1, "127.0.0.1:1", "--store", "s3://bucket/prefix", "push", "--dir", src, "x:v1")
		if d := time.Since(start); d > time.Minute {
			t.Fatalf("unreachable endpoint took %v", d)
		}
	})
}

// TestS3RoundTrip runs against the real S3 server when EPOCH_TEST_S3_* are
// set (scripts/s3-server.sh).
func TestS3RoundTrip(t *testing.T) {
	endpoint := os.Getenv("EPOCH_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("EPOCH_TEST_S3_ENDPOINT not set")
	}
	c := newCLI(t)
	c.env["EPOCH_S3_ENDPOINT"] = endpoint
	c.env["EPOCH_S3_ACCESS_KEY"] = os.Getenv("EPOCH_TEST_S3_ACCESS_KEY")
	c.env["EPOCH_S3_SECRET_KEY"] = os.Getenv("EPOCH_TEST_S3_SECRET_KEY")
	c.env["EPOCH_STORE"] = "s3://" + os.Getenv("EPOCH_TEST_S3_BUCKET") + "/cli-test-" + randomSuffix()

	src := filepath.Join(t.TempDir(), "src")
	raw := writeFiles(t, src, 11)
	var push summary
	c.jsonOK(&push, "push", "--dir", src, "s3data:v1")
	push.check(t, "push", "s3data", "v1", raw)

	// Another node pulls it.
	c.env["EPOCH_CACHE_DIR"] = filepath.Join(t.TempDir(), "node-b")
	out := filepath.Join(t.TempDir(), "out")
	var pull summary
	c.jsonOK(&pull, "pull", "s3data:v1", "--dir", out)
	pull.check(t, "pull", "s3data", "v1", raw)
	if *pull.DownloadedBytes == 0 || pull.Digest != push.Digest {
		t.Fatalf("pull: %+v", pull)
	}
	sameTree(t, src, out)
	c.ok("check", "--read-data")
	var tags struct {
		Tags []struct{ Tag string } `json:"tags"`
	}
	c.jsonOK(&tags, "ls", "s3data")
	if len(tags.Tags) != 1 || tags.Tags[0].Tag != "v1" {
		t.Fatalf("ls: %+v", tags)
	}
}

func TestDemo(t *testing.T) {
	c := newCLI(t)
	var res struct {
		Revisions []struct {
			Revision       int   `json:"revision"`
			RawBytes       int64 `json:"raw_bytes"`
			WholeFileBytes int64 `json:"whole_file_bytes"`
			UploadBytes    int64 `json:"upload_bytes"`
			DownloadBytes  int64 `json:"download_bytes"`
			Verified       bool  `json:"verified"`
		} `json:"revisions"`
		Total struct {
			UploadBytes int64 `json:"upload_bytes"`
		} `json:"total"`
		UploadSavings float64 `json:"upload_savings"`
		Verified      bool    `json:"verified"`
	}
	c.jsonOK(&res, "demo", "--memory", "32MiB", "--revisions", "3")
	if len(res.Revisions) != 3 || !res.Verified {
		t.Fatalf("demo: %+v", res)
	}
	for _, r := range res.Revisions {
		if !r.Verified || r.RawBytes == 0 || r.UploadBytes == 0 || r.DownloadBytes == 0 {
			t.Fatalf("demo revision %+v", r)
		}
		if r.Revision >= 2 && r.UploadBytes*4 >= r.WholeFileBytes {
			t.Fatalf("revision %d: epoch-dedup uploaded %d, whole-file %d: not below a quarter", r.Revision, r.UploadBytes, r.WholeFileBytes)
		}
		if r.Revision >= 2 && r.DownloadBytes*4 >= r.WholeFileBytes {
			t.Fatalf("revision %d: epoch-dedup downloaded %d, whole-file %d: not below a quarter", r.Revision, r.DownloadBytes, r.WholeFileBytes)
		}
	}
	if res.UploadSavings <= 1 {
		t.Fatalf("demo savings %v", res.UploadSavings)
	}
	// The demo pushed into the store it was given.
	if _, err := os.Stat(filepath.Join(c.store, "catalog.json")); err != nil {
		t.Fatalf("demo did not use --store: %v", err)
	}
	// The human table.
	out := c.ok("demo", "-q", "--memory", "8MiB", "--disk", "4MiB", "--revisions", "2")
	for _, want := range []string{"WHOLE-FILE", "rev2", "total", "less"} {
		if !strings.Contains(out.stdout, want) {
			t.Fatalf("demo table lacks %q: %s", want, out)
		}
	}
}
