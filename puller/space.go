package puller

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cocoonstack/epoch-dedup/manifest"
)

// ErrNoSpace: the files of a fetch need more disk than the filesystem has
// free. Checked before anything is written.
var ErrNoSpace = errors.New("not enough free disk space")

// spaceSlack is kept free on top of what the files need: filesystem
// metadata, and other writers on the same disk.
const spaceSlack = 64 << 20

// checkSpace refuses a fetch whose data (zero extents are holes and cost
// nothing) does not fit in the free space of its target filesystems. A pull
// that would fill the disk, or a hostile recipe claiming petabytes of data,
// fails up front with the numbers instead of part-way with ENOSPC.
func checkSpace(files []File) error {
	need := map[string]int64{} // dir -> bytes
	for _, file := range files {
		n := dataBytes(file.Recipe)
		if file.Resume {
			// Blocks already allocated by an earlier run are reused.
			if fi, err := os.Stat(file.Path); err == nil {
				n -= allocatedBytes(fi)
			}
		}
		need[filepath.Dir(file.Path)] += max(n, 0)
	}
	// Dirs on one filesystem share its free space: sum per device.
	type fsNeed struct {
		dir        string
		need, free int64
	}
	byDev := map[uint64]*fsNeed{}
	for dir, n := range need {
		free, dev, ok := freeBytes(dir)
		if !ok {
			continue // unknown here (another OS, or the dir is missing: open reports it)
		}
		fs := byDev[dev]
		if fs == nil {
			fs = &fsNeed{dir: dir, free: free}
			byDev[dev] = fs
		}
		fs.need += n
	}
	for _, fs := range byDev {
		if fs.need > 0 && fs.need+spaceSlack > fs.free {
			return fmt.Errorf("%w: %s: the files need %d bytes (holes excluded), %d are free", ErrNoSpace, fs.dir, fs.need, fs.free)
		}
	}
	return nil
}

// dataBytes returns the bytes of r's data extents, saturating well below
// int64 overflow for recipes that claim absurd sizes.
func dataBytes(r *manifest.Recipe) int64 {
	if r == nil {
		return 0
	}
	var n int64
	for _, e := range r.Extents {
		if !e.Zero {
			n += int64(e.Length)
			if n > manifest.MaxSize {
				return manifest.MaxSize
			}
		}
	}
	return n
}
