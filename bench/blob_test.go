package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/bench"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
)

// TestRunBlob_Small runs the blob benchmark end to end on a small file, so
// the benchmark code keeps working; the numbers of a real run are in
// bench/RESULTS.md.
func TestRunBlob_Small(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and pushes files")
	}
	res, err := bench.RunBlob(context.Background(), bench.BlobConfig{
		Size: 32 << 20, RSSSize: -1, WorkDir: t.TempDir(), Exe: "/nonexistent",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SecondPush.Bytes == 0 || res.LowerBound == 0 {
		t.Fatalf("nothing measured: %+v", res)
	}
	if r := float64(res.SecondPush.Bytes) / float64(res.LowerBound); r > 1.5 {
		t.Errorf("second version stored %.2fx the lower bound", r)
	}
	var buf bytes.Buffer
	if err := bench.WriteBlobMarkdown(&buf, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "lower bound") || !strings.Contains(buf.String(), "median of 3") {
		t.Fatalf("report: %s", buf.String())
	}
	// Three rounds by default; the time reported is their median.
	for _, tm := range []bench.Timed{res.FirstPush, res.SecondPush, res.RePush} {
		runs := slices.Sorted(slices.Values(tm.Runs))
		if len(runs) != 3 || tm.Seconds != runs[1] {
			t.Fatalf("timed %+v: want the median of 3 runs", tm)
		}
	}
	t.Log("\n" + buf.String())
}

// TestMain lets the test binary stand in for the epoch-dedup binary in the
// benchmark's child processes ("bench child ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "child" {
		if err := bench.Child(context.Background(), os.Args[3:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunBlob_Children runs the parts of the blob benchmark that measure in
// child processes: peak memory of a push and a pull, and, against the S3
// test server, the cold pull of a snapshot next to plain GETs.
func TestRunBlob_Children(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and pushes files")
	}
	cfg := bench.BlobConfig{Size: 16 << 20, RSSSize: 24 << 20, Rounds: 1, WorkDir: t.TempDir(), Exe: os.Args[0]}
	if s3, ok := objectstoretest.S3Config(t); ok {
		cfg.S3 = s3
	}
	res, err := bench.RunBlob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.RSSPush == nil || res.RSSPush.MaxRSSKB == 0 || res.RSSPull == nil || res.RSSPull.MaxRSSKB == 0 {
		t.Fatalf("no peak memory measured: %+v %+v", res.RSSPush, res.RSSPull)
	}
	var buf bytes.Buffer
	if err := bench.WriteBlobMarkdown(&buf, res); err != nil {
		t.Fatal(err)
	}
	if cfg.S3 != nil {
		sp := res.S3Snapshot
		if sp == nil || sp.Pull.Bytes == 0 || sp.Pull.MaxRSSKB == 0 || sp.GetBefore.Bytes != sp.Size || sp.GetAfter.Bytes != sp.Size {
			t.Fatalf("snapshot pull not measured: %+v", sp)
		}
		if !strings.Contains(buf.String(), "snapshot") {
			t.Fatalf("report without the snapshot pull: %s", buf.String())
		}
	}
	t.Log("\n" + buf.String())
}
