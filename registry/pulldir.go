package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/epoch-dedup/manifest"
)

// PullDir pulls every layer of name:tag into the folder dir (created if
// missing), for users without Cocoon: the counterpart of PushDir. Each file
// appears complete and verified or not at all (written to a temporary name
// beside it, synced, renamed); files already in dir that the manifest does
// not name are left alone. A manifest naming a file that is not a plain file
// name (a path, "..", control characters) is refused before anything is
// written. Base images are not pulled: a folder has no place for them.
func (r *Registry) PullDir(ctx context.Context, name, tag, dir string, progress Progress) (*manifest.Manifest, TransferStats, error) {
	start := time.Now()
	if tag == "" {
		tag = defaultTag
	}
	fail := func(err error) (*manifest.Manifest, TransferStats, error) {
		return nil, TransferStats{}, fmt.Errorf("pull %s:%s: %w", name, tag, err)
	}
	if err := checkRef(name, tag); err != nil {
		return fail(err)
	}
	if dir == "" {
		return fail(fmt.Errorf("no target folder"))
	}
	m, err := r.PullManifest(ctx, name, tag)
	if err != nil {
		return nil, TransferStats{}, err
	}
	// Parse validated the names already; check again here, where they turn
	// into paths, so a change in Parse cannot open a traversal.
	for _, l := range m.Layers {
		if err := manifest.ValidateFilename(l.Filename); err != nil {
			return fail(fmt.Errorf("layer %q: %w", l.Filename, err))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	var total TransferStats
	for _, l := range m.Layers {
		done := total
		var p Progress
		if progress != nil {
			p = func(s TransferStats) {
				sum := addStats(done, s)
				sum.Seconds = time.Since(start).Seconds()
				progress(sum)
			}
		}
		target := filepath.Join(dir, l.Filename)
		st, err := r.PullBlobStats(ctx, l.Digest, target, p)
		if err != nil {
			return fail(fmt.Errorf("layer %s: %w", l.Filename, err))
		}
		if l.Mode != 0 {
			if err := os.Chmod(target, os.FileMode(l.Mode).Perm()); err != nil {
				return fail(fmt.Errorf("layer %s: %w", l.Filename, err))
			}
		}
		total = addStats(total, st)
		if progress != nil {
			snap := total
			snap.Seconds = time.Since(start).Seconds()
			progress(snap)
		}
	}
	total.Seconds = time.Since(start).Seconds()
	return m, total, nil
}

// addStats sums two transfer counts (Seconds excepted).
func addStats(a, b TransferStats) TransferStats {
	return TransferStats{
		Files:           a.Files + b.Files,
		RawBytes:        a.RawBytes + b.RawBytes,
		DataBytes:       a.DataBytes + b.DataBytes,
		Chunks:          a.Chunks + b.Chunks,
		NewChunks:       a.NewChunks + b.NewChunks,
		NewBytes:        a.NewBytes + b.NewBytes,
		ReusedBytes:     a.ReusedBytes + b.ReusedBytes,
		ClonedBytes:     a.ClonedBytes + b.ClonedBytes,
		UploadedBytes:   a.UploadedBytes + b.UploadedBytes,
		DownloadedBytes: a.DownloadedBytes + b.DownloadedBytes,
		Packs:           a.Packs + b.Packs,
		Requests:        a.Requests + b.Requests,
	}
}
