//go:build linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// demoTempBase picks the folder for the demo's temporary roots: $TMPDIR
// when set, else /dev/shm when it is a tmpfs with room for both nodes (the
// demo writes and syncs about four times the snapshot per revision, which
// a busy disk turns into minutes), else the default temporary folder.
func demoTempBase(memory, disk int64, revisions int) string {
	if os.Getenv("TMPDIR") != "" {
		return ""
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return ""
	}
	need := 3*(memory+disk+int64(revisions)*disk/demoDiskGrowShare) + 256<<20
	if int64(st.Bavail)*st.Bsize < 2*need || unix.Access("/dev/shm", unix.W_OK) != nil {
		return ""
	}
	return "/dev/shm"
}
