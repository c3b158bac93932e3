package snapgen

import (
	"fmt"
	"io"
	"math/rand/v2"
)

// MemorySpec describes the first revision of a guest-memory image.
type MemorySpec struct {
	Size         int64   // bytes; a partial last page is allowed
	ZeroFraction float64 // share of pages that are all zero (holes when written sparse)
	// Compressibility is the share of each non-zero page that is compressible
	// text-like content; the rest of the page is random.
	Compressibility float64
	Seed            uint64
}

// MemoryChange describes how memory changes between two saves of a VM.
// Fractions of DirtyFraction and MoveFraction are of all pages; ZeroFraction
// is of the previous revision's non-zero pages. The three sets are disjoint.
type MemoryChange struct {
	DirtyFraction float64 // pages rewritten with never-seen content
	MoveFraction  float64 // pages that take a copy of some existing page's content
	ZeroFraction  float64 // non-zero pages that turn zero
	Clustered     bool    // dirty pages come in aligned runs of DirtyRun pages instead of scattered
}

// DirtyRun is the run length, in pages, of clustered dirty pages.
const DirtyRun = 64

// Memory is one revision of a guest-memory image. It holds only a page table
// (8 bytes per 4 KiB page, so 8 MiB for 4 GiB) and is immutable.
type Memory struct {
	img pageImage
}

// NewMemory returns the first revision described by spec.
func NewMemory(spec MemorySpec) *Memory {
	size := max(spec.Size, 0)
	n := pagesFor(size)
	pages := make([]uint64, n)
	r := newRand(spec.Seed, 0x6d656d) // "mem"
	zeros := fraction(spec.ZeroFraction, n)
	isZero := make([]bool, n)
	pick(r, n, zeros, func(int64) bool { return true }, func(i int64) { isZero[i] = true })
	for i := range pages {
		if !isZero[i] {
			pages[i] = nonZero(derive(spec.Seed, uint64(i)))
		}
	}
	return &Memory{img: pageImage{size: size, pages: pages, text: textBytes(spec.Compressibility)}}
}

// Next returns the next revision: m changed as described by change, with the
// random choices driven by seed. m itself is not modified.
func (m *Memory) Next(change MemoryChange, seed uint64) *Memory {
	prev := m.img.pages
	n := int64(len(prev))
	pages := append([]uint64(nil), prev...)
	r := newRand(seed, 0x6e657874) // "next"

	// Page state for this step: 0 untouched, 1 dirty, 2 moved, 3 zeroed.
	state := make([]uint8, n)
	if change.Clustered {
		// Whole runs, plus one partial run for the remainder, so the dirty
		// count is exact as in the scattered case.
		k := fraction(change.DirtyFraction, n)
		runs := (n + DirtyRun - 1) / DirtyRun
		var last int64 = -1
		pick(r, runs, (k+DirtyRun-1)/DirtyRun, func(int64) bool { return true }, func(run int64) {
			for i := run * DirtyRun; i < min((run+1)*DirtyRun, n); i++ {
				state[i] = 1
			}
			last = run
		})
		if rem := k % DirtyRun; rem != 0 && last >= 0 {
			for i := last*DirtyRun + rem; i < min((last+1)*DirtyRun, n); i++ {
				state[i] = 0
			}
		}
	} else {
		pick(r, n, fraction(change.DirtyFraction, n), func(int64) bool { return true },
			func(i int64) { state[i] = 1 })
	}
	for i := range n {
		if state[i] == 1 {
			pages[i] = nonZero(r.Uint64())
		}
	}

	var nonZeroPrev int64
	for _, s := range prev {
		if s != 0 {
			nonZeroPrev++
		}
	}
	if nonZeroPrev > 0 {
		untouched := func(i int64) bool { return state[i] == 0 }
		pick(r, n, fraction(change.MoveFraction, n), untouched, func(i int64) { state[i] = 2 })
		for i := range n {
			if state[i] == 2 {
				pages[i] = randomNonZero(r, prev, nonZeroPrev)
			}
		}
		pick(r, n, fraction(change.ZeroFraction, nonZeroPrev),
			func(i int64) bool { return state[i] == 0 && prev[i] != 0 },
			func(i int64) { pages[i] = 0 })
	}
	return &Memory{img: pageImage{size: m.img.size, pages: pages, text: m.img.text}}
}

// randomNonZero returns the content seed of a uniformly chosen non-zero page
// of pages, which holds nz non-zero pages (nz > 0).
func randomNonZero(r *rand.Rand, pages []uint64, nz int64) uint64 {
	// Rejection sampling is O(1) expected while most pages are non-zero; the
	// counted scan bounds the cost for nearly empty images.
	for range 32 {
		if s := pages[r.Int64N(int64(len(pages)))]; s != 0 {
			return s
		}
	}
	k := r.Int64N(nz)
	for _, s := range pages {
		if s != 0 {
			if k == 0 {
				return s
			}
			k--
		}
	}
	panic("snapgen: non-zero page count out of date")
}

// Size returns the image size in bytes.
func (m *Memory) Size() int64 { return m.img.size }

// Pages returns the number of 4 KiB pages (the last one may be partial).
func (m *Memory) Pages() int64 { return int64(len(m.img.pages)) }

// IsZeroPage reports whether page i is all zero.
func (m *Memory) IsZeroPage(i int64) bool { return m.img.pages[i] == 0 }

// PageBytes writes the content of page i into dst, which must hold PageSize
// bytes. For a partial last page, only the first Size()%PageSize bytes are
// part of the image.
func (m *Memory) PageBytes(i int64, dst []byte) { m.img.pageBytes(i, dst) }

// ReaderAt returns a reader that generates the image bytes on the fly. It is
// safe for concurrent use.
func (m *Memory) ReaderAt() io.ReaderAt { return readerAt{&m.img} }

// WriteTo writes the whole image, zero pages included, to w.
func (m *Memory) WriteTo(w io.Writer) (int64, error) { return m.img.writeTo(w) }

// WriteFile writes the image to path; with sparse, zero pages stay holes.
func (m *Memory) WriteFile(path string, sparse bool) error {
	if err := m.img.writeFile(path, sparse); err != nil {
		return fmt.Errorf("write memory image: %w", err)
	}
	return nil
}

// NewPagesSince returns the indexes of pages whose content occurs nowhere in
// prev: the lower bound of what any deduplicating store must upload for m
// once it holds prev.
func (m *Memory) NewPagesSince(prev *Memory) []int64 { return m.img.newPagesSince(&prev.img) }

type readerAt struct{ img *pageImage }

func (r readerAt) ReadAt(p []byte, off int64) (int, error) { return r.img.readAt(p, off) }
