package main

import (
	"strings"
	"sync"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func newCheckCmd(a *app) *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "check [--read-data]",
		Short: "Verify that every manifest in the store can be pulled",
		Long: `Check every manifest in the store (by tag and by digest): each file's blob
exists, its recipe loads and verifies (patch chains included), every chunk
is located by the store's index objects, and every pack holding them exists.
With --read-data every pack is also downloaded, hashed against its name, its
table parsed, and every needed chunk decoded and hashed.

Problems are listed one per line with their kind (missing-pack,
corrupt-chunk, missing-recipe, ...), the store key at fault and the tags
that need it; with --json the whole report is one JSON object. The exit
status is 3 when problems are found, 1 when the check could not run.`,
		Example: `  epoch-dedup check
  epoch-dedup check --read-data --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(func(reg *registry.Registry) error {
				bar := a.newCheckBar()
				rep, err := reg.Check(cmd.Context(), registry.CheckOptions{ReadData: readData, Progress: bar.progress()})
				bar.finish()
				if err != nil {
					return err
				}
				if a.json {
					if err := a.printJSON(rep); err != nil {
						return err
					}
				} else {
					a.printCheck(rep)
				}
				if !rep.OK() {
					return &problemsError{n: len(rep.Problems)}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "download every pack and verify every chunk")
	return cmd
}

func (a *app) printCheck(rep *registry.CheckReport) {
	a.printf("checked %d manifests, %d blobs, %d recipes, %s chunks in %d packs", rep.Manifests, rep.Blobs, rep.Recipes, count(rep.Chunks), rep.Packs)
	if rep.ReadData {
		a.printf(" (read %d packs, %s)", rep.PacksRead, cocoon.HumanSize(rep.BytesRead))
	}
	a.printf("\n")
	if rep.OK() {
		a.printf("no problems found\n")
		return
	}
	a.printf("%d problems:\n", len(rep.Problems))
	for _, p := range rep.Problems {
		refs := strings.Join(p.Refs, ", ")
		if refs == "" {
			refs = p.Ref
		}
		a.printf("  %-16s %s  [%s]  %s\n", p.Kind, p.Object, refs, p.Detail)
	}
}

// checkBar shows the phases of a check on a terminal; nil does nothing.
type checkBar struct {
	a     *app
	mu    sync.Mutex
	phase string
	pb    *progressbar.ProgressBar
}

func (a *app) newCheckBar() *checkBar {
	if !a.showProgress() {
		return nil
	}
	return &checkBar{a: a}
}

func (b *checkBar) progress() func(registry.CheckProgress) {
	if b == nil {
		return nil
	}
	return func(p registry.CheckProgress) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if p.Phase != b.phase || b.pb == nil {
			if b.pb != nil {
				_ = b.pb.Finish()
			}
			b.phase = p.Phase
			b.pb = progressbar.NewOptions64(p.Total,
				progressbar.OptionSetWriter(b.a.stderr),
				progressbar.OptionSetDescription("check "+p.Phase),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionFullWidth(),
			)
		}
		_ = b.pb.Set64(p.Done)
	}
}

func (b *checkBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pb != nil {
		_ = b.pb.Finish()
	}
}
