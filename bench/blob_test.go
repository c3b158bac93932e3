package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/bench"
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
	if !strings.Contains(buf.String(), "lower bound") {
		t.Fatalf("report: %s", buf.String())
	}
	t.Log("\n" + buf.String())
}
