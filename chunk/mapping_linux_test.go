package chunk

import (
	"errors"
	"io"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSplitter_MappedHolesNotRead splits a sparse file through mapped
// windows with holes and checks with mincore that no hole page entered the
// page cache: a hole read through a mapping would have put one there.
func TestSplitter_MappedHolesNotRead(t *testing.T) {
	const pages = 3000
	data := makeImage(21, pages*PageSize, 0.5)
	f := writeImage(t, data, true)
	regions, err := DataRegions(f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) < 2 {
		t.Skip("the filesystem keeps no holes")
	}
	s, err := NewSplitter(f, int64(len(data)), regions, FixedPage(), WithReadSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	mapped := 0
	for {
		_, err := s.NextBatch()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if w := s.DetachWindow(); w != nil {
			mapped++
			w.Release()
		}
	}
	if mapped == 0 {
		t.Fatal("no window of the sparse file was mapped")
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(m) }()
	vec := make([]byte, pages)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m)), uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
		t.Fatal(errno)
	}
	for p := range pages {
		off := int64(p) * PageSize
		i := 0
		for i < len(regions) && regions[i].End() <= off {
			i++
		}
		hole := i == len(regions) || regions[i].Offset >= off+PageSize
		if hole && vec[p]&1 != 0 {
			t.Fatalf("hole page %d is in the page cache: it was read", p)
		}
	}
}
