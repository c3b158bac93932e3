package cocoon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// StagingPrefix starts the name of every pull staging directory inside
	// SnapshotDataDir; the leading dot keeps it out of snapshot ID space.
	StagingPrefix = ".epoch-pull-"
	// DefaultStagingMaxAge is the age after which CleanStaleStaging removes
	// a staging directory whatever its owner, when given maxAge <= 0.
	DefaultStagingMaxAge = 24 * time.Hour

	// stagingOwnerFile records the pulling process inside a staging dir;
	// InstallSnapshotDir removes it before the rename.
	stagingOwnerFile = ".epoch-owner"
	// snapshotDirMode keeps others out: the directory holds guest RAM.
	snapshotDirMode = 0o750
)

// ErrSnapshotDirExists is returned by InstallSnapshotDir when the target
// directory exists and is not empty. Replacing it is the caller's decision.
var ErrSnapshotDirExists = errors.New("snapshot dir exists")

// NewStagingDir creates an empty staging directory for pulling snapshot id:
// <SnapshotDataDir>/.epoch-pull-<id>-<random>, on the same filesystem as its
// final place so InstallSnapshotDir is one rename. It records this process
// as owner so CleanStaleStaging can tell a dead pull from a live one.
func NewStagingDir(paths *Paths, id string) (string, error) {
	if err := ValidateSnapshotID(id); err != nil {
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	if err := os.MkdirAll(paths.SnapshotDataDir, dbDirMode); err != nil {
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	dir, err := os.MkdirTemp(paths.SnapshotDataDir, StagingPrefix+id+"-*")
	if err != nil {
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	owner := fmt.Sprintf("pid %d\npidns %s\n", os.Getpid(), pidNamespace())
	err = os.Chmod(dir, snapshotDirMode)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, stagingOwnerFile), []byte(owner), 0o644)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("create staging dir %s: %w", dir, err)
	}
	return dir, nil
}

// InstallSnapshotDir makes tmpDir (a direct child of SnapshotDataDir, as
// NewStagingDir makes) the directory of snapshot id: it fsyncs every file and
// directory in tmpDir, renames tmpDir to <SnapshotDataDir>/<id> and fsyncs
// SnapshotDataDir. An empty target is replaced; a non-empty one (or a file)
// fails with ErrSnapshotDirExists and leaves tmpDir in place. Add the DB
// record only after this returns nil.
func InstallSnapshotDir(ctx context.Context, paths *Paths, id, tmpDir string) error {
	target, err := paths.SnapshotDir(id)
	if err != nil {
		return fmt.Errorf("install snapshot dir: %w", err)
	}
	if err := checkStagingDir(paths, tmpDir); err != nil {
		return fmt.Errorf("install snapshot dir %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(tmpDir, stagingOwnerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install snapshot dir %s: %w", id, err)
	}
	if err := syncTree(ctx, tmpDir); err != nil {
		return fmt.Errorf("install snapshot dir %s: %w", id, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("install snapshot dir %s: %w", id, err)
	}
	if err := renameDir(tmpDir, target); err != nil {
		if isTargetExists(err) {
			return fmt.Errorf("install snapshot dir %s: %w: %s is not empty", id, ErrSnapshotDirExists, target)
		}
		return fmt.Errorf("install snapshot dir %s: rename %s: %w", id, tmpDir, err)
	}
	if err := syncDir(paths.SnapshotDataDir); err != nil {
		return fmt.Errorf("install snapshot dir %s: %w", id, err)
	}
	return nil
}

// CleanStaleStaging removes staging directories of dead pulls from
// SnapshotDataDir: those whose owner process (in this PID namespace) is gone,
// and those in which nothing changed for maxAge (DefaultStagingMaxAge when
// maxAge <= 0), whoever owns them. It returns the directories removed and
// keeps going past errors, returning them joined.
func CleanStaleStaging(ctx context.Context, paths *Paths, maxAge time.Duration) ([]string, error) {
	if maxAge <= 0 {
		maxAge = DefaultStagingMaxAge
	}
	entries, err := os.ReadDir(paths.SnapshotDataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clean staging dirs: %w", err)
	}
	myNS := pidNamespace()
	now := time.Now()
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), StagingPrefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("clean staging dirs: %w", err))
			break
		}
		dir := filepath.Join(paths.SnapshotDataDir, e.Name())
		stale, err := stagingStale(dir, myNS, now, maxAge)
		if err != nil {
			errs = append(errs, fmt.Errorf("clean staging dir %s: %w", dir, err))
			continue
		}
		if !stale {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("clean staging dir %s: %w", dir, err))
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// checkStagingDir insists tmpDir is a real directory directly inside
// SnapshotDataDir, so the rename cannot cross filesystems or move anything
// unexpected into Cocoon's tree.
func checkStagingDir(paths *Paths, tmpDir string) error {
	absTmp, err := filepath.Abs(tmpDir)
	if err != nil {
		return err
	}
	absData, err := filepath.Abs(paths.SnapshotDataDir)
	if err != nil {
		return err
	}
	if filepath.Dir(absTmp) != absData {
		return fmt.Errorf("staging dir %s is not directly inside %s", tmpDir, paths.SnapshotDataDir)
	}
	info, err := os.Lstat(absTmp)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("staging dir %s is not a directory", tmpDir)
	}
	return nil
}

// syncTree fsyncs every regular file and directory under root (root last),
// checking ctx between files because a multi-GiB fsync can take a while.
func syncTree(ctx context.Context, root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			return syncFile(p)
		}
		// Symlinks and special files have no data of their own to flush.
		return nil
	})
	if err != nil {
		return err
	}
	// Children before parents, so each directory's entries are durable first.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return f.Close()
}

// stagingStale decides whether dir belongs to a dead pull. Its age is that of
// the newest of dir and its direct entries: a file being written keeps
// bumping its own mtime, not the directory's.
func stagingStale(dir, myNS string, now time.Time, maxAge time.Duration) (bool, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	newest := info.ModTime()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if now.Sub(newest) > maxAge {
		return true, nil
	}
	pid, ns, ok := readStagingOwner(filepath.Join(dir, stagingOwnerFile))
	// Without an owner, or with one from another PID namespace, only age counts.
	if !ok || ns == "" || ns != myNS {
		return false, nil
	}
	return !pidAlive(pid), nil
}

// readStagingOwner parses the owner file NewStagingDir writes.
func readStagingOwner(path string) (pid int, ns string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), " ")
		if !found {
			continue
		}
		switch key {
		case "pid":
			if n, err := strconv.Atoi(val); err == nil && n > 0 {
				pid = n
			}
		case "pidns":
			ns = val
		}
	}
	return pid, ns, pid > 0 && sc.Err() == nil
}

// ExchangeSnapshotDir atomically swaps tmpDir (a staging dir as
// NewStagingDir makes) with the existing directory of snapshot id
// (renameat2 RENAME_EXCHANGE): readers see the old snapshot or the new one,
// never neither. Afterwards tmpDir holds the old content; the caller removes
// it once the new one is recorded, or swaps back by calling again.
func ExchangeSnapshotDir(ctx context.Context, paths *Paths, id, tmpDir string) error {
	target, err := paths.SnapshotDir(id)
	if err != nil {
		return fmt.Errorf("exchange snapshot dir: %w", err)
	}
	if err := checkStagingDir(paths, tmpDir); err != nil {
		return fmt.Errorf("exchange snapshot dir %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(tmpDir, stagingOwnerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("exchange snapshot dir %s: %w", id, err)
	}
	if err := syncTree(ctx, tmpDir); err != nil {
		return fmt.Errorf("exchange snapshot dir %s: %w", id, err)
	}
	if err := exchangeDirs(tmpDir, target); err != nil {
		return fmt.Errorf("exchange snapshot dir %s: %w", id, err)
	}
	if err := syncDir(paths.SnapshotDataDir); err != nil {
		return fmt.Errorf("exchange snapshot dir %s: %w", id, err)
	}
	return nil
}

// AdoptStagingDir takes over the staging dir of a dead pull of snapshot id,
// so a rerun can reuse what the dead one already fetched. It returns the
// adopted dir (renamed to a fresh name and owned by this process) and true,
// or "" and false when there is none. The rename makes adoption race-free:
// of two processes adopting the same dir, one wins and the other moves on.
func AdoptStagingDir(ctx context.Context, paths *Paths, id string) (string, bool, error) {
	if err := ValidateSnapshotID(id); err != nil {
		return "", false, fmt.Errorf("adopt staging dir: %w", err)
	}
	entries, err := os.ReadDir(paths.SnapshotDataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("adopt staging dir: %w", err)
	}
	myNS := pidNamespace()
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), StagingPrefix+id+"-") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		old := filepath.Join(paths.SnapshotDataDir, e.Name())
		pid, ns, ok := readStagingOwner(filepath.Join(old, stagingOwnerFile))
		if !ok || ns == "" || ns != myNS || pidAlive(pid) {
			continue
		}
		fresh, err := NewStagingDir(paths, id)
		if err != nil {
			return "", false, err
		}
		owner, err := os.ReadFile(filepath.Join(fresh, stagingOwnerFile))
		if err == nil {
			// rename(2) only replaces an empty directory.
			err = os.Remove(filepath.Join(fresh, stagingOwnerFile))
		}
		if err != nil {
			_ = os.RemoveAll(fresh)
			return "", false, fmt.Errorf("adopt staging dir: %w", err)
		}
		// rename(2) replaces the empty fresh dir with the old one atomically.
		if err := renameDir(old, fresh); err != nil {
			_ = os.RemoveAll(fresh)
			continue // another process adopted it first
		}
		if err := os.WriteFile(filepath.Join(fresh, stagingOwnerFile), owner, 0o644); err != nil {
			return "", false, fmt.Errorf("adopt staging dir %s: %w", fresh, err)
		}
		return fresh, true, nil
	}
	return "", false, nil
}
