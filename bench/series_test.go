package bench_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/bench"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
)

// TestRun_Quick runs the quick series configuration against the folder
// store (and S3 when EPOCH_TEST_S3_ENDPOINT is set) and checks the claims
// on every series: upload and warm pull within 1.5x of the lower bound,
// upload far below the whole-file and zstd-parts baselines. Set
// EPOCH_BENCH_OUT to keep the report and charts.
func TestRun_Quick(t *testing.T) {
	if testing.Short() {
		t.Skip("generates, pushes and pulls snapshot series")
	}
	cfg := bench.Config{
		Series:  bench.SeriesConfig{Quick: true},
		WorkDir: t.TempDir(),
		// restic is a reference in the full run only: the claims do not
		// depend on it and it doubles the time.
		Restic: "-",
		Log:    func(s string) { t.Log(s) },
	}
	if s3, ok := objectstoretest.S3Config(t); ok {
		cfg.S3 = s3
	}
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := bench.WriteMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + md.String())
	out := os.Getenv("EPOCH_BENCH_OUT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "out")
	}
	if err := bench.WriteOutput(out, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Series {
		svg, err := os.ReadFile(filepath.Join(out, bench.SVGName(s)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(svg, []byte("<svg")) || !strings.Contains(string(svg), "lower bound") {
			t.Errorf("%s: chart lacks the lower bound line", s.Name)
		}
		if len(s.Claims) == 0 {
			t.Errorf("%s: no claims checked", s.Name)
		}
		if cfg.S3 != nil && len(s.Revisions[0].Stores) != 2 {
			t.Errorf("%s: S3 store not measured", s.Name)
		}
	}
	for _, f := range rep.Failed() {
		t.Errorf("claim does not hold: %s", f)
	}
}

// envInt reads an optional integer setting of the full run.
func envInt(t *testing.T, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// TestRun_Default runs the default configuration (512 MiB memory, 5
// revisions per series, restic when installed, S3 when configured) and
// writes the report, JSON and charts to EPOCH_BENCH_OUT (default
// bench/results). It runs only with EPOCH_BENCH_FULL=1: it takes tens of
// minutes. EPOCH_BENCH_ONLY (comma-separated series name parts) and
// EPOCH_BENCH_REVISIONS narrow it. Claims are recorded in the report, not failed here: the quick
// test is the gate.
func TestRun_Default(t *testing.T) {
	if os.Getenv("EPOCH_BENCH_FULL") != "1" {
		t.Skip("set EPOCH_BENCH_FULL=1 to run the full benchmark")
	}
	out := os.Getenv("EPOCH_BENCH_OUT")
	if out == "" {
		out = "results"
	}
	cfg := bench.Config{
		Series: bench.SeriesConfig{Revisions: envInt(t, "EPOCH_BENCH_REVISIONS")},
		Log:    func(s string) { t.Log(s) },
		OnSeries: func(r *bench.Report) {
			if err := bench.WriteOutput(out, r); err != nil {
				t.Error(err)
			}
		},
	}
	if only := os.Getenv("EPOCH_BENCH_ONLY"); only != "" {
		cfg.Series.Only = strings.Split(only, ",")
	}
	if s3, ok := objectstoretest.S3Config(t); ok {
		cfg.S3 = s3
	}
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.WriteOutput(out, rep); err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failed() {
		t.Logf("claim does not hold: %s", f)
	}
}
