package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// SnapshotPull is the cold pull of a Cocoon-shaped snapshot from S3 (issue
// "Cocoon snapshots": at least as fast as plain GETs of its files, peak
// RSS under 256 MiB), in a child process of its own.
type SnapshotPull struct {
	Size int64 `json:"size"` // the snapshot's files, apparent size
	Push Timed `json:"push"` // in-process, for reference
	Pull Timed `json:"pull"` // cold node, child process, with its peak RSS
	// The same files as plain objects, one GET each into a synced file,
	// before and after the pull: the page cache a write lands in costs
	// what this VM's host charges for memory it backs first (the GET of
	// 512 MiB took 1.2 s or 2.9 s depending on it), so the baseline is
	// measured twice and the faster one counts.
	GetBefore Timed `json:"plain_get_before"`
	GetAfter  Timed `json:"plain_get_after"`
}

// snapshotRepo is the repository the snapshot benchmark pushes to.
const snapshotRepo = "bench/snapshot"

// childS3Env carries the S3 configuration to a child process (JSON of
// objectstore.Config); "pull-dir s3 ..." reads it.
const childS3Env = "EPOCH_BENCH_CHILD_S3"

// runSnapshotPull writes a snapshot of size bytes (guest memory, sparse,
// and the small JSON files Cocoon keeps beside it), pushes it to a fresh
// prefix of the S3 store, and times a cold pull in a child process against
// plain GETs of the same files.
func runSnapshotPull(ctx context.Context, cfg BlobConfig, work string, size int64) (*SnapshotPull, error) {
	dir := filepath.Join(work, "snapshot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	m := snapgen.NewMemory(snapgen.MemorySpec{Size: size, ZeroFraction: 0.3, Compressibility: 0.5, Seed: 4})
	if err := m.WriteFile(filepath.Join(dir, "memory-ranges"), true); err != nil {
		return nil, err
	}
	for name, body := range map[string]string{
		"config.json": `{"cpus":{"boot_vcpus":2},"memory":{"size":` + fmt.Sprint(size) + `},"payload":{"kernel":"vmlinux"}}`,
		"state.json":  `{"id":"bench","state":"paused","pid":0}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	files, err := regularFiles(dir)
	if err != nil {
		return nil, err
	}
	want := make(map[string]fileSig, len(files))
	res := &SnapshotPull{}
	for _, f := range files {
		sum, err := fileSHA256(f.path)
		if err != nil {
			return nil, err
		}
		want[f.name] = fileSig{sha: sum}
		res.Size += f.size
	}

	s3cfg := *cfg.S3
	s3cfg.Prefix = fmt.Sprintf("bench-snapshot-%d/", time.Now().UnixNano())
	client, err := objectstore.New(&s3cfg)
	if err != nil {
		return nil, err
	}
	defer cleanPrefix(context.WithoutCancel(ctx), client)

	pusher := registry.New(client, registry.WithCacheDir(filepath.Join(work, "snapshot-cache-push")))
	settle()
	start := time.Now()
	_, st, err := pusher.PushDir(ctx, dir, snapshotRepo, "latest", nil)
	_ = pusher.Close()
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	res.Push = Timed{Seconds: time.Since(start).Seconds(), Bytes: st.UploadedBytes}
	if _, err := plainPut(ctx, client, "plain/", files); err != nil {
		return nil, err
	}

	getDir := filepath.Join(work, "snapshot-get")
	settle()
	if res.GetBefore, err = plainGet(ctx, client, "plain/", files, getDir); err != nil {
		return nil, err
	}

	cfgJSON, err := json.Marshal(&s3cfg) //nolint:gosec // the keys go to our own child process, as they came to this one
	if err != nil {
		return nil, err
	}
	dest := filepath.Join(work, "snapshot-pulled")
	defer func() { _ = os.RemoveAll(dest) }()
	settle()
	var out childOutput
	res.Pull, err = runChildEnv(ctx, cfg.Exe, []string{childS3Env + "=" + string(cfgJSON)}, &out,
		"pull-dir", "s3", filepath.Join(work, "snapshot-cache-pull"), snapshotRepo, "latest", dest)
	if err != nil {
		return nil, err
	}
	if err := verifyPulled(dest, want); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(dest)

	settle()
	if res.GetAfter, err = plainGet(ctx, client, "plain/", files, getDir); err != nil {
		return nil, err
	}
	return res, nil
}

// childClient opens the store a child is told to use: a folder, or "s3"
// for the configuration in childS3Env.
func childClient(store string) (*objectstore.Client, error) {
	if store != "s3" {
		return objectstore.NewLocal(store)
	}
	var cfg objectstore.Config
	if err := json.Unmarshal([]byte(os.Getenv(childS3Env)), &cfg); err != nil {
		return nil, fmt.Errorf("bench child: %s: %w", childS3Env, err)
	}
	return objectstore.New(&cfg)
}
