package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func newPullCmd(a *app) *cobra.Command {
	var localName, dir, tag string
	cmd := &cobra.Command{
		Use:   "pull [flags] NAME[:TAG]",
		Short: "Pull a snapshot into the Cocoon root, or into a folder with --dir",
		Long: `Pull NAME:TAG (tag "latest" by default) and install it as a Cocoon snapshot
under --root, named NAME or --name, with its base images; or with --dir write
its files into a folder. Chunks this node already holds (in snapshots it
pushed or pulled before) are copied locally; only the rest is downloaded.
Every chunk and every file is verified, and a file appears only complete.

On a terminal a progress bar shows bytes downloaded and reused and the rate
(not with -q or --json). The last line sums up: raw size, chunks downloaded,
bytes downloaded and reused, the ratio raw/downloaded and the time; with
--json it is one JSON object (raw_bytes, new_bytes, downloaded_bytes,
reused_bytes, chunks, new_chunks, seconds, name, tag, digest, ...).`,
		Example: `  # install myvm:latest as the Cocoon snapshot myvm
  epoch-dedup pull myvm
  # a given revision under another local name
  epoch-dedup pull myvm:hibernate --name myvm-restore
  # files of any repository into a folder
  epoch-dedup pull artifacts:v3 --dir ./out`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			name, t, err := refWithTag(argv[0], tag)
			if err != nil {
				return err
			}
			if localName != "" {
				if dir != "" {
					return usagef("--name and --dir do not go together")
				}
				if err := manifest.ValidateName(localName); err != nil {
					return &usageError{fmt.Errorf("--name: %w", err)}
				}
			}
			if dir != "" {
				return a.pullDir(cmd.Context(), name, t, dir)
			}
			return a.pullSnapshot(cmd.Context(), name, t, localName)
		},
	}
	cmd.Flags().StringVar(&localName, "name", "", "local snapshot name (default NAME)")
	cmd.Flags().StringVar(&dir, "dir", "", "write the files into this folder instead of the Cocoon root")
	cmd.Flags().StringVarP(&tag, "tag", "t", "", `tag to pull (default "latest")`)
	return cmd
}

func (a *app) pullSnapshot(ctx context.Context, name, tag, localName string) error {
	paths := cocoon.NewPaths(a.rootDir())
	return a.withRegistry(func(reg *registry.Registry) error {
		bar := a.newTransferBar("pull "+name+":"+tag, 0, true)
		m, st, err := reg.PullSnapshot(ctx, paths, name, tag, registry.PullOptions{LocalName: localName, Progress: bar.progress()})
		bar.finish()
		if err != nil {
			return err
		}
		return a.printSummary(newSummary("pull", name, tag, pulledDigest(ctx, reg, name, tag, m), st))
	})
}

func (a *app) pullDir(ctx context.Context, name, tag, dir string) error {
	return a.withRegistry(func(reg *registry.Registry) error {
		bar := a.newTransferBar("pull "+name+":"+tag, 0, true)
		m, st, err := reg.PullDir(ctx, name, tag, dir, bar.progress())
		bar.finish()
		if err != nil {
			return err
		}
		return a.printSummary(newSummary("pull", name, tag, pulledDigest(ctx, reg, name, tag, m), st))
	})
}

// pulledDigest returns the digest of the stored manifest m was parsed
// from. The registry does not return the stored bytes, so read them: when
// the tag still holds the same manifest (compared by re-encoding both), the
// digest of the stored bytes is exact; otherwise (the tag moved since) the
// digest of m's encoding is the best there is.
func pulledDigest(ctx context.Context, reg *registry.Registry, name, tag string, m *manifest.Manifest) string {
	mine := manifestDigest(m)
	data, err := reg.ManifestJSON(ctx, name, tag)
	if err != nil {
		return mine
	}
	stored, err := manifest.Parse(data)
	if err != nil || manifestDigest(stored) != mine {
		return mine
	}
	return manifest.Digest(data)
}
