package puller

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBytes returns the bytes an unprivileged writer may still use on dir's
// filesystem and the filesystem's device.
func freeBytes(dir string) (free int64, dev uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, 0, false
	}
	sys, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix {
		return 0, 0, false
	}
	return int64(st.Bavail) * st.Bsize, sys.Dev, true //nolint:gosec // Bavail*Bsize of a real filesystem fits int64
}

// allocatedBytes returns the disk blocks fi's file holds.
func allocatedBytes(fi os.FileInfo) int64 {
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return fi.Size()
}
