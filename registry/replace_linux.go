package registry

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// replaceFile makes tmp visible at dest atomically. When dest exists, the
// two are exchanged (renameat2 RENAME_EXCHANGE) and the old content is
// unlinked in the background: freeing a multi-GiB file can take seconds
// (filesystems mounted with discard trim every freed block), and a pull
// must not make a waking VM wait for the previous revision's deletion.
// Close waits for these removals.
func (r *Registry) replaceFile(tmp, dest string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dest, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		r.removeLater(tmp)
		return nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		// No dest yet, or a filesystem without exchange: a plain rename.
		return os.Rename(tmp, dest)
	default:
		return err
	}
}
