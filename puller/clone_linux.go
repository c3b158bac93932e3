package puller

import (
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes n bytes of dst at dstOff share src's blocks at srcOff
// (FICLONERANGE: XFS with reflink, btrfs, bcachefs), copying nothing.
// Offsets and n must be multiples of the filesystem block size; ext4 and
// tmpfs refuse with EOPNOTSUPP.
func cloneFile(dst, src *os.File, dstOff, srcOff, n int64) error {
	return unix.IoctlFileCloneRange(int(dst.Fd()), &unix.FileCloneRange{
		Src_fd:      int64(src.Fd()),
		Src_offset:  uint64(srcOff), //nolint:gosec // a file offset
		Src_length:  uint64(n),      //nolint:gosec // a run's length
		Dest_offset: uint64(dstOff), //nolint:gosec // a file offset
	})
}
