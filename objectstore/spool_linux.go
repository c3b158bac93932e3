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

// setDirect turns O_DIRECT on or off for f's open file.
func setDirect(f *os.File, on bool) error {
	fd := f.Fd()
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, flags)
	return err
}

// sameFilesystem reports whether paths a and b are on one filesystem.
func sameFilesystem(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}
