package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/bench"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

func newBenchCmd(a *app) *cobra.Command {
	var (
		quick, s3, noBlob, noSeries, noRSS bool
		out                                string
		only, dirs                         []string
		size, rssSize                      sizeFlag
		revisions, rounds                  int
	)
	size, rssSize = 1<<30, 4<<30
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure savings, speed and memory against whole-file uploads, zstd parts, restic and plain S3",
		Long: `bench generates seeded snapshot series (guest memory changing at 0.1-30 %,
a growing qcow2-like overlay, an export tar with inserts) and measures, per
revision, the bytes epoch-dedup uploads and downloads next to whole-file
uploads, zstd-compressed 512 MiB parts, restic (when installed) and the lower
bound (the zstd size of content the store has never seen). The blob
benchmark pushes a 1 GiB memory file and a 2 % rewrite of it, times it
against restic (the median of --rounds rounds on fresh stores, taking
turns), measures peak memory in a child process, and times PullBlob
from S3 against one plain GET and the cold pull of a 4 GiB snapshot (--rss-size)
in a child process against plain GETs of its files. Every ratio is against a
baseline measured in the same run; the report names the machine.

With --s3, the S3 half uses the EPOCH_S3_* settings (scripts/bench.sh starts a
local versitygw and sets them).`,
		Example: `  epoch-dedup bench --quick --out /tmp/bench
  epoch-dedup bench --s3 --out bench/results
  epoch-dedup bench --no-blob --dir snap-rev1 --dir snap-rev2   # real snapshots, in order`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var s3cfg *objectstore.Config
			if s3 {
				cfg, err := objectstore.ConfigFromEnv("EPOCH_S3")
				if err != nil {
					return err
				}
				s3cfg = cfg
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			logf := func(s string) {
				if !a.quiet {
					_, _ = fmt.Fprintln(a.stderr, "bench: "+s)
				}
			}
			var failed []string
			if !noSeries {
				cfg := bench.Config{S3: s3cfg, Log: logf}
				cfg.Series.Quick = quick
				cfg.Series.Only = only
				cfg.Series.Dirs = dirs
				cfg.Series.Revisions = revisions
				cfg.OnSeries = func(r *bench.Report) { _ = bench.WriteOutput(out, r) }
				rep, err := bench.Run(ctx, cfg)
				if err != nil {
					return err
				}
				if err := bench.WriteOutput(out, rep); err != nil {
					return err
				}
				failed = append(failed, rep.Failed()...)
			}
			if !noBlob {
				bc := bench.BlobConfig{Size: int64(size), RSSSize: int64(rssSize), Rounds: rounds, S3: s3cfg, Log: logf}
				if quick {
					bc.Size, bc.RSSSize = 64<<20, 256<<20
				}
				if noRSS {
					bc.RSSSize = -1
				}
				res, err := runBlobBench(ctx, bc, out)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(res)
				}
			}
			_, _ = fmt.Fprintf(a.stdout, "results in %s\n", out)
			if len(failed) > 0 {
				return fmt.Errorf("claims not met: %s", strings.Join(failed, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "small sizes (32 MiB memory, 3 revisions; 64 MiB blob): a minute, not an hour")
	f.BoolVar(&s3, "s3", false, "also measure against the S3 store of the EPOCH_S3_* settings")
	f.BoolVar(&noBlob, "no-blob", false, "skip the 1 GiB blob benchmark")
	f.BoolVar(&noSeries, "no-series", false, "skip the snapshot series")
	f.StringVar(&out, "out", "bench/out", "folder for report.md, report.json, blob.md and the SVG charts")
	f.StringSliceVar(&only, "only", nil, "run only the series whose name contains this")
	f.StringArrayVar(&dirs, "dir", nil, "a folder holding one revision of a real snapshot; repeat, in order")
	f.IntVar(&revisions, "revisions", 0, "revisions per series (default 5, quick 3)")
	f.IntVar(&rounds, "rounds", 0, "times the blob benchmark's pushes and restic's backups run, on fresh stores, taking turns; the report gives the median (default 3)")
	f.Var(&size, "size", "size of the blob benchmark's file")
	f.Var(&rssSize, "rss-size", "size of the file pushed and pulled to measure peak memory")
	f.BoolVar(&noRSS, "no-rss", false, "skip the peak-memory measurement")
	cmd.AddCommand(&cobra.Command{
		Use:    "child",
		Hidden: true,
		Short:  "one measured operation, for the peak-memory measurement",
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.Child(cmd.Context(), args, a.stdout)
		},
	})
	return cmd
}

// runBlobBench runs the blob benchmark and writes its report to blob.md in
// out.
func runBlobBench(ctx context.Context, bc bench.BlobConfig, out string) (*bench.BlobResult, error) {
	res, err := bench.RunBlob(ctx, bc)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(out, "blob.md"))
	if err != nil {
		return nil, err
	}
	err = bench.WriteBlobMarkdown(f, res)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}
