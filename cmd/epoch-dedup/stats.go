package main

import (
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func newStatsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show how much the store holds and saves",
		Long: `Sum up the store: raw bytes (the total size of every tagged revision: what a
whole-file registry would hold), stored bytes (packs, recipes, index
objects, metadata), their ratio, the number of packs and chunks, and the raw
bytes per repository. It lists the whole store and reads every tag's
manifest.`,
		Example: `  epoch-dedup stats
  epoch-dedup --store s3://snapshots/prod stats --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(func(reg *registry.Registry) error {
				st, err := reg.Stats(cmd.Context())
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(st)
				}
				a.printStats(st)
				return nil
			})
		},
	}
}

func (a *app) printStats(st *registry.StoreStats) {
	a.printf("store         %s\n", st.Store)
	a.printf("repositories  %d (%d tags)\n", len(st.Repositories), st.Tags)
	a.printf("raw           %s\n", cocoon.HumanSize(st.RawBytes))
	a.printf("stored        %s (packs %s, recipes %s, index %s, metadata %s",
		cocoon.HumanSize(st.StoredBytes), cocoon.HumanSize(st.PackBytes), cocoon.HumanSize(st.RecipeBytes),
		cocoon.HumanSize(st.IndexBytes), cocoon.HumanSize(st.MetadataBytes))
	if st.LegacyBytes > 0 {
		a.printf(", whole blobs %s", cocoon.HumanSize(st.LegacyBytes))
	}
	a.printf(")\n")
	a.printf("ratio         %s (raw / stored)\n", ratioString(st.DedupRatio))
	a.printf("packs         %s, chunks %s\n", count(st.Packs), count(st.Chunks))
	if len(st.Repositories) == 0 {
		return
	}
	a.printf("\n")
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	_, _ = tw.Write([]byte("REPOSITORY\tTAGS\tRAW\n"))
	for _, r := range st.Repositories {
		a.fprintf(tw, "%s\t%d\t%s\n", r.Name, r.Tags, cocoon.HumanSize(r.RawBytes))
	}
	_ = tw.Flush()
}
