package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// envGCGrace sets the default of gc --grace (and must match the pushers').
const envGCGrace = "EPOCH_GC_GRACE"

func newGCCmd(a *app) *cobra.Command {
	var (
		keepLast int
		keepTags []string
		grace    time.Duration
		below    float64
		dryRun   bool
	)
	cmd := &cobra.Command{
		Use:   "gc [--keep-last N] [--keep-tag PATTERN]... [--grace DUR] [--rewrite-below F] [--dry-run]",
		Short: "Delete what no kept manifest needs, without stopping pushes or pulls",
		Long: `Garbage-collect the store without a lock (docs/GC.md). A run applies
retention (--keep-last: keep the newest N revisions of each repository and
delete older ones with their tags, except revisions of tags matching a
--keep-tag pattern), marks what the remaining manifests and recent blob
descriptors need, deletes what earlier runs condemned at least --grace ago
and is still unneeded, and condemns what is older than --grace and unneeded.
Packs whose live share is below --rewrite-below have their live chunks
copied to new packs first. Content is deleted only by a later run: run gc
periodically (e.g. every --grace).

--grace (default $EPOCH_GC_GRACE, else 1h) must be at least the grace
period every pusher assumes.`,
		Example: `  epoch-dedup gc --keep-last 5 --keep-tag 'release-*'
  epoch-dedup gc --dry-run --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("grace") {
				if v := a.getenv(envGCGrace); v != "" {
					d, err := time.ParseDuration(v)
					if err != nil || d <= 0 {
						return usagef("%s=%q: not a positive duration", envGCGrace, v)
					}
					grace = d
				}
			}
			if grace <= 0 {
				return usagef("--grace %v: must be positive", grace)
			}
			if keepLast < 0 {
				return usagef("--keep-last %d: must not be negative", keepLast)
			}
			if below < 0 || below > 1 {
				return usagef("--rewrite-below %v: must be within [0,1]", below)
			}
			opts := registry.GCOptions{KeepLast: keepLast, KeepTags: keepTags, Grace: grace, RewriteBelow: below, DryRun: dryRun}
			if below == 0 {
				opts.RewriteBelow = -1 // 0 on the command line: never rewrite
			}
			reg, err := a.openRegistry(registry.WithGCGrace(grace))
			if err != nil {
				return err
			}
			defer func() { _ = reg.Close() }()
			rep, err := reg.GC(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(rep)
			}
			a.printGC(rep)
			return nil
		},
	}
	cmd.Flags().IntVar(&keepLast, "keep-last", 0, "keep the newest N revisions of each repository (0: no retention)")
	cmd.Flags().StringArrayVar(&keepTags, "keep-tag", nil, "never delete the revisions of tags matching this pattern (TAG or NAME:TAG, path.Match syntax; repeatable)")
	cmd.Flags().DurationVar(&grace, "grace", registry.DefaultGCGrace, "grace period (default $"+envGCGrace+", else 1h)")
	cmd.Flags().Float64Var(&below, "rewrite-below", 0.5, "rewrite packs whose live share is below this (0: never)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be done, change nothing")
	return cmd
}

func (a *app) printGC(rep *registry.GCReport) {
	what := "deleted"
	if rep.DryRun {
		what = "would delete"
	}
	a.printf("retention     %s %d revisions, %d tags\n", what, rep.ManifestsDeleted, rep.TagsDeleted)
	a.printf("plans         %d executed, %d pending\n", rep.PlansExecuted, rep.PlansPending)
	a.printf("deleted       %d packs (%s), %d recipes, %d descriptors; %d condemned packs found live again\n",
		rep.PacksDeleted, cocoon.HumanSize(rep.BytesDeleted), rep.RecipesDeleted, rep.DescriptorsDeleted, rep.PacksSpared)
	a.printf("condemned     %d packs (%s, %d rewritten into %d new, %s), %d recipes, %d descriptors\n",
		rep.PacksCondemned, cocoon.HumanSize(rep.BytesCondemned), rep.PacksRewritten, rep.PacksWritten,
		cocoon.HumanSize(rep.BytesWritten), rep.RecipesCondemned, rep.DescriptorsCondemned)
	a.printf("packs         %s -> %s; live data %s in %s chunks\n",
		cocoon.HumanSize(rep.BytesBefore), cocoon.HumanSize(rep.BytesAfter), cocoon.HumanSize(rep.LiveBytes), count(rep.LiveChunks))
	if rep.MissingChunks > 0 {
		a.printf("warning       %d live chunks are in no pack: run check\n", rep.MissingChunks)
	}
	if rep.DryRun {
		a.printf("dry run: nothing was changed\n")
	}
}
