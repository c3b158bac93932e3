//go:build unix

package puller_test

import (
	"os"
	"syscall"
	"testing"
)

// allocated returns the bytes the file system allocated to path (st_blocks
// counts 512-byte units whatever the block size), or -1 if unknown.
func allocated(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1
	}
	return int64(st.Blocks) * 512 //nolint:unconvert // Blocks differs in type between unix platforms
}
