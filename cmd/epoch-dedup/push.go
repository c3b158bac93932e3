package main

import (
	"context"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

func newPushCmd(a *app) *cobra.Command {
	var tag, dir string
	cmd := &cobra.Command{
		Use:   "push [flags] NAME[:TAG]",
		Short: "Push a Cocoon snapshot, or a folder with --dir",
		Long: `Push the Cocoon snapshot NAME (from the snapshot DB under --root) as
NAME:TAG, or with --dir every regular file of a folder. Files are cut into
chunks; only chunks the store does not hold yet are compressed and uploaded.
The tag defaults to "latest"; give it as NAME:TAG or with -t.

On a terminal a progress bar shows bytes scanned, bytes new, bytes sent, the
rate and the ETA (not with -q or --json). The last line sums up: raw size,
new chunks, bytes uploaded, bytes reused, the ratio raw/uploaded and the
time; with --json it is one JSON object (raw_bytes, new_bytes,
uploaded_bytes, reused_bytes, chunks, new_chunks, seconds, name, tag,
digest, ...).`,
		Example: `  # after "cocoon vm save myvm": push it as myvm:latest
  epoch-dedup push myvm
  # the same snapshot as myvm:hibernate, to S3
  EPOCH_S3_ENDPOINT=https://s3.example.com EPOCH_S3_ACCESS_KEY=... EPOCH_S3_SECRET_KEY=... \
    epoch-dedup --store s3://snapshots/prod push myvm -t hibernate
  # any folder of files
  epoch-dedup push --dir ./build-output artifacts:v3 --json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			name, t, err := refWithTag(argv[0], tag)
			if err != nil {
				return err
			}
			if dir != "" {
				return a.pushDir(cmd.Context(), dir, name, t)
			}
			return a.pushSnapshot(cmd.Context(), name, t)
		},
	}
	cmd.Flags().StringVarP(&tag, "tag", "t", "", `tag to push as (default "latest")`)
	cmd.Flags().StringVar(&dir, "dir", "", "push every regular file of this folder instead of a Cocoon snapshot")
	return cmd
}

// refWithTag parses NAME[:TAG] and applies a -t flag, refusing two
// different tags.
func refWithTag(ref, flagTag string) (string, string, error) {
	name, tag, err := parseRef(ref)
	if err != nil {
		return "", "", err
	}
	if flagTag == "" {
		return name, tag, nil
	}
	if err := manifest.ValidateTag(flagTag); err != nil {
		return "", "", &usageError{err}
	}
	if hasTag(ref) && tag != flagTag {
		return "", "", usagef("two tags given: %q in %q and -t %q", tag, ref, flagTag)
	}
	return name, flagTag, nil
}

// hasTag reports whether a reference spells out its tag.
func hasTag(ref string) bool {
	i := strings.LastIndexByte(ref, ':')
	return i >= 0 && i > strings.LastIndexByte(ref, '/')
}

func (a *app) pushSnapshot(ctx context.Context, name, tag string) error {
	paths := cocoon.NewPaths(a.rootDir())
	return a.withRegistry(func(reg *registry.Registry) error {
		var total int64
		if a.showProgress() {
			total = snapshotSize(ctx, paths, name)
		}
		bar := a.newTransferBar("push "+name+":"+tag, total, false)
		m, st, err := reg.PushSnapshot(ctx, paths, name, tag, bar.progress())
		bar.finish()
		if err != nil {
			return err
		}
		return a.printSummary(newSummary("push", name, tag, manifestDigest(m), st))
	})
}

func (a *app) pushDir(ctx context.Context, dir, name, tag string) error {
	return a.withRegistry(func(reg *registry.Registry) error {
		var total int64
		if a.showProgress() {
			total = dirSize(dir)
		}
		bar := a.newTransferBar("push "+name+":"+tag, total, false)
		m, st, err := reg.PushDir(ctx, dir, name, tag, bar.progress())
		bar.finish()
		if err != nil {
			return err
		}
		return a.printSummary(newSummary("push", name, tag, manifestDigest(m), st))
	})
}

// manifestDigest is the digest of the manifest as pushed: the registry
// stores exactly m.Marshal().
func manifestDigest(m *manifest.Manifest) string {
	data, err := m.Marshal()
	if err != nil {
		return ""
	}
	return manifest.Digest(data)
}

// snapshotSize is the apparent size of a snapshot's files, for the
// progress bar; 0 when unknown (the push itself reports errors).
func snapshotSize(ctx context.Context, paths *cocoon.Paths, name string) int64 {
	db, err := cocoon.LoadSnapshotDB(ctx, paths)
	if err != nil {
		return 0
	}
	id, err := cocoon.ResolveSnapshotID(db, name)
	if err != nil {
		return 0
	}
	files, err := cocoon.SnapshotFiles(paths, id)
	if err != nil {
		return 0
	}
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// dirSize sums the regular files of dir, as PushDir pushes them.
func dirSize(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
