package objectstore

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openAnonymous opens an unnamed file in dir that linkFile can give a name.
func openAnonymous(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE, 0o600)
}

// linkFile gives f the name path, which must not exist, without copying:
// f may be anonymous (O_TMPFILE) or named. It fails across filesystems
// (EXDEV) and without /proc; the caller then copies.
func linkFile(f *os.File, path string) error {
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
}
