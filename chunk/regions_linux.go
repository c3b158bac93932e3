package chunk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DataRegions returns the data regions of the first size bytes of f, found
// with lseek SEEK_DATA/SEEK_HOLE, so a sparse 12 GiB memory file with 25 MB
// allocated is read as 25 MB. When the file system does not support these
// whence values the whole file is one region (still correct, only slower).
//
// It moves f's file offset; the splitter reads with ReadAt, which ignores it.
func DataRegions(f *os.File, size int64) ([]Region, error) {
	if size <= 0 {
		return []Region{}, nil
	}
	whole := []Region{{Offset: 0, Length: size}}
	raw, err := f.SyscallConn()
	if err != nil {
		return whole, nil //nolint:nilerr // no fd: fall back to dense reading, which is always correct
	}
	var regions []Region
	var seekErr error
	ctlErr := raw.Control(func(fd uintptr) {
		regions, seekErr = seekRegions(int(fd), size)
	})
	if ctlErr != nil {
		return nil, fmt.Errorf("data regions of %s: %w", f.Name(), ctlErr)
	}
	if errors.Is(seekErr, errUnsupported) {
		return whole, nil
	}
	if seekErr != nil {
		return nil, fmt.Errorf("data regions of %s: %w", f.Name(), seekErr)
	}
	return regions, nil
}

var errUnsupported = errors.New("seek data unsupported")

func seekRegions(fd int, size int64) ([]Region, error) {
	regions := []Region{}
	off := int64(0)
	for off < size {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off: the rest is a hole
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
			return nil, errUnsupported
		}
		if err != nil {
			return nil, fmt.Errorf("seek data at %d: %w", off, err)
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole at %d: %w", start, err)
		}
		if end > size || end <= start {
			// The file grew or changed under us; treat the rest as data,
			// which reads correctly whatever it holds.
			end = size
		}
		regions = append(regions, Region{Offset: start, Length: end - start})
		off = end
	}
	return regions, nil
}
