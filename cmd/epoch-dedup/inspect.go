package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// inspectOutput is the JSON of "inspect".
type inspectOutput struct {
	Name     string                 `json:"name"`
	Tag      string                 `json:"tag"`
	Digest   string                 `json:"digest"`
	Manifest json.RawMessage        `json:"manifest"`
	Stats    *registry.ManifestInfo `json:"stats"`
}

func newInspectCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME[:TAG]",
		Short: "Show a manifest, its files and how each is stored",
		Long: `Show the manifest of NAME:TAG (tag "latest" by default): the snapshot's
settings, then per file its size, chunker, chunks (and distinct chunks), zero
bytes (holes, never stored), and its recipe (full, or a patch on the previous
revision's). The totals count a chunk shared by several files once. With
--json the raw manifest and the figures are printed as one JSON object.`,
		Example: `  epoch-dedup inspect myvm
  epoch-dedup inspect myvm:hibernate --json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			name, tag, err := parseRef(argv[0])
			if err != nil {
				return err
			}
			return a.withRegistry(func(reg *registry.Registry) error {
				ctx := cmd.Context()
				data, err := reg.ManifestJSON(ctx, name, tag)
				if err != nil {
					return err
				}
				m, err := manifest.Parse(data)
				if err != nil {
					return fmt.Errorf("inspect %s:%s: %w", name, tag, err)
				}
				st, err := reg.ManifestStats(ctx, m)
				if err != nil {
					return err
				}
				out := inspectOutput{Name: name, Tag: tag, Digest: manifest.Digest(data), Manifest: data, Stats: st}
				if a.json {
					return a.printJSON(out)
				}
				a.printInspect(m, out)
				return nil
			})
		},
	}
}

func (a *app) printInspect(m *manifest.Manifest, out inspectOutput) {
	st := out.Stats
	a.printf("%s:%s  sha256:%s\n", out.Name, out.Tag, out.Digest)
	if m.SnapshotID != "" {
		a.printf("snapshot  %s  cpu %d  memory %s  storage %s\n", m.SnapshotID, m.CPU, cocoon.HumanSize(m.Memory), cocoon.HumanSize(m.Storage))
	}
	if m.Image != "" {
		a.printf("image     %s\n", m.Image)
	}
	a.printf("created   %s  pushed %s\n", when(m.CreatedAt), when(m.PushedAt))
	a.printf("total     %s in %d files: %s data, %s zero; %s distinct chunks (%s), %s smaller than raw before compression\n\n",
		cocoon.HumanSize(st.RawBytes), len(st.Layers), cocoon.HumanSize(st.DataBytes), cocoon.HumanSize(st.ZeroBytes),
		count(st.UniqueChunks), cocoon.HumanSize(st.UniqueBytes), ratioString(st.DedupRatio))
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	_, _ = tw.Write([]byte("FILE\tSIZE\tCHUNKER\tCHUNKS\tDISTINCT\tZERO\tRECIPE\n"))
	for _, l := range st.Layers {
		if l.Legacy {
			a.fprintf(tw, "%s\t%s\t-\t-\t-\t-\twhole blob (Epoch v0.1)\n", l.Filename, cocoon.HumanSize(l.Size))
			continue
		}
		recipe := short(l.Recipe) + " " + l.RecipeKind
		if l.ChainDepth > 0 {
			recipe += fmt.Sprintf(" (depth %d)", l.ChainDepth)
		}
		a.fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Filename, cocoon.HumanSize(l.Size), dash(l.Chunker),
			count(l.Chunks), count(l.UniqueChunks), cocoon.HumanSize(l.ZeroBytes), recipe)
	}
	_ = tw.Flush()
	if len(m.BaseImages) > 0 {
		a.printf("\nbase images:\n")
		for _, b := range m.BaseImages {
			a.printf("  %s  %s\n", b.Filename, cocoon.HumanSize(b.Size))
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
