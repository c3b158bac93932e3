//go:build unix

package snapgen

import (
	"os"
	"syscall"
	"testing"
)

// allocatedBytes returns the bytes the file system allocated for path
// (st_blocks is in 512-byte units on every unix).
func allocatedBytes(t *testing.T, path string) (int64, bool) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int64(sys.Blocks) * 512, true
}
