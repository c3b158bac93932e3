package cocoon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

var (
	// ErrUnsafeSymlink is returned for a symlink in a snapshot directory that
	// dangles or points outside that directory.
	ErrUnsafeSymlink = errors.New("unsafe symlink in snapshot dir")
	// ErrUnsupportedFile is returned for an entry of a snapshot directory
	// that is not a regular file (a directory, device, socket, ...): pushing
	// without it would silently lose part of the snapshot.
	ErrUnsupportedFile = errors.New("unsupported file in snapshot dir")
)

// FileInfo describes one file of a snapshot directory.
type FileInfo struct {
	// Name is the file name inside the snapshot directory.
	Name string
	// Size is the apparent size in bytes (holes included).
	Size int64
	// Mode is the file's mode; for a symlink, its target's.
	Mode fs.FileMode
}

// SnapshotFiles lists every file of snapshot id's directory, sorted by name,
// non-recursively and skipping nothing: a symlink that stays inside the
// directory and names a regular file is listed with its target's size and
// mode; one that leaves it fails with ErrUnsafeSymlink; any other non-regular
// entry fails with ErrUnsupportedFile.
func SnapshotFiles(paths *Paths, id string) ([]FileInfo, error) {
	dir, err := paths.SnapshotDir(id)
	if err != nil {
		return nil, fmt.Errorf("list snapshot files: %w", err)
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("list snapshot files %s: %w", dir, err)
	}
	// Resolve the directory itself: the root is often a symlink to a data disk.
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot files %s: %w", dir, err)
	}
	files := make([]FileInfo, 0, len(entries))
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var info fs.FileInfo
		switch {
		case e.Type().IsRegular():
			info, err = e.Info()
		case e.Type()&fs.ModeSymlink != 0:
			info, err = statInside(realDir, p)
		default:
			return nil, fmt.Errorf("list snapshot files: %w: %s is %s", ErrUnsupportedFile, p, e.Type())
		}
		if err != nil {
			return nil, fmt.Errorf("list snapshot files: %w", err)
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("list snapshot files: %w: %s is %s", ErrUnsupportedFile, p, info.Mode().Type())
		}
		files = append(files, FileInfo{Name: e.Name(), Size: info.Size(), Mode: info.Mode()})
	}
	return files, nil
}

// HumanSize formats bytes with IEC units and one decimal: "512 B",
// "1.5 GiB". A value that would round to 1024.0 moves to the next unit.
func HumanSize(bytes int64) string {
	const units = "KMGTPE"
	if bytes < 0 {
		if bytes == -bytes { // math.MinInt64 has no positive twin
			return "-8.0 EiB"
		}
		return "-" + HumanSize(-bytes)
	}
	if bytes < 1024 {
		return strconv.FormatInt(bytes, 10) + " B"
	}
	v := float64(bytes) / 1024
	i := 0
	for i < len(units)-1 && v >= 1024-0.05 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i:i+1] + "iB"
}

// statInside resolves the symlink p and stats its target, refusing targets
// outside realDir so a hostile snapshot cannot push /etc/shadow.
func statInside(realDir, p string) (fs.FileInfo, error) {
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnsafeSymlink, p, err)
	}
	rel, err := filepath.Rel(realDir, target)
	if err != nil || !filepath.IsLocal(rel) || rel == "." {
		return nil, fmt.Errorf("%w: %s points to %s", ErrUnsafeSymlink, p, target)
	}
	info, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", target, err)
	}
	return info, nil
}
