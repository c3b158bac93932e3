//go:build unix

package index

import (
	"os"
	"syscall"
)

func inodeDev(fi os.FileInfo) (inode, dev uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), uint64(st.Dev) //nolint:unconvert // Dev and Ino differ in type between unix platforms
	}
	return 0, 0
}
