package snapgen

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ClusterSize is the qcow2 cluster size the overlay generator uses.
const ClusterSize = 64 << 10

const (
	pagesPerCluster = ClusterSize / PageSize
	// overlayText: disk blocks are half text-like (files, logs) per page.
	overlayText = PageSize / 2
	// DefaultVirtualSize is the guest-visible disk size written in overlay
	// headers; the file itself only holds the clusters written so far.
	DefaultVirtualSize = 10 << 30
)

// OverlaySpec describes the first revision of a qcow2-like disk overlay.
type OverlaySpec struct {
	Size int64 // initial file size in bytes, rounded up to whole clusters (at least one)
	Seed uint64
}

// Overlay is one revision of a qcow2-like overlay: a header cluster (magic
// "QFI\xfb", optional backing path, a fake cluster map that grows with the
// file) followed by data clusters of 4 KiB pages generated as in Memory.
// It is immutable.
type Overlay struct {
	img     pageImage
	backing string
}

// NewOverlay returns the first revision described by spec.
func NewOverlay(spec OverlaySpec) *Overlay {
	clusters := max((spec.Size+ClusterSize-1)/ClusterSize, 1)
	pages := make([]uint64, clusters*pagesPerCluster)
	for i := int64(pagesPerCluster); i < int64(len(pages)); i++ {
		pages[i] = nonZero(derive(spec.Seed^0x6f766c, uint64(i)))
	}
	return newOverlay(pages, "")
}

func newOverlay(pages []uint64, backing string) *Overlay {
	o := &Overlay{backing: backing}
	o.img = pageImage{
		size:   int64(len(pages)) * PageSize,
		pages:  pages,
		text:   overlayText,
		header: overlayHeader(int64(len(pages))/pagesPerCluster, backing),
	}
	return o
}

// overlayHeader builds the first cluster: a qcow2 v3 header (big-endian, as
// in qcow2) and, from offset 4 KiB, a fake cluster map with one entry per
// data cluster, so metadata changes when the file grows, as in real qcow2.
func overlayHeader(clusters int64, backing string) []byte {
	h := make([]byte, ClusterSize)
	be := binary.BigEndian
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3)                   // version
	be.PutUint32(h[20:], 16)                 // cluster_bits
	be.PutUint64(h[24:], DefaultVirtualSize) // virtual size
	be.PutUint32(h[36:], uint32(clusters))   // l1_size stand-in
	be.PutUint64(h[40:], PageSize)           // l1_table_offset
	be.PutUint32(h[96:], 4)                  // refcount_order
	be.PutUint32(h[100:], 104)               // header_length
	const backingOff = 512
	if backing != "" {
		n := copy(h[backingOff:PageSize], backing)
		be.PutUint64(h[8:], backingOff) // backing_file_offset
		be.PutUint32(h[16:], uint32(n)) // backing_file_size
	}
	for c := int64(1); c < clusters && PageSize+c*8 <= ClusterSize; c++ {
		be.PutUint64(h[PageSize+(c-1)*8:], uint64(c*ClusterSize)|1<<63) // "copied" flag
	}
	return h
}

// WithBacking returns the same overlay with its header pointing at backing,
// an absolute path in real Cocoon roots (<root>/cloudimg/blobs/<hex>.qcow2).
func (o *Overlay) WithBacking(backing string) *Overlay {
	return newOverlay(o.img.pages, backing)
}

// Next returns the next revision: growBytes more data (rounded up to whole
// clusters) with never-seen content, and rewriteFraction of the existing data
// pages rewritten with never-seen content. o itself is not modified.
func (o *Overlay) Next(growBytes int64, rewriteFraction float64, seed uint64) *Overlay {
	r := newRand(seed, 0x646973) // "dis"
	grow := max((growBytes+ClusterSize-1)/ClusterSize, 0) * pagesPerCluster
	old := int64(len(o.img.pages))
	pages := make([]uint64, old, old+grow)
	copy(pages, o.img.pages)
	data := old - pagesPerCluster
	pick(r, data, fraction(rewriteFraction, data), func(int64) bool { return true },
		func(i int64) { pages[pagesPerCluster+i] = nonZero(r.Uint64()) })
	for range grow {
		pages = append(pages, nonZero(r.Uint64()))
	}
	return newOverlay(pages, o.backing)
}

// Size returns the file size in bytes.
func (o *Overlay) Size() int64 { return o.img.size }

// PageBytes writes the content of page i into dst, which must hold PageSize bytes.
func (o *Overlay) PageBytes(i int64, dst []byte) { o.img.pageBytes(i, dst) }

// ReaderAt returns a reader that generates the file bytes on the fly. It is
// safe for concurrent use.
func (o *Overlay) ReaderAt() io.ReaderAt { return readerAt{&o.img} }

// WriteTo writes the whole file to w.
func (o *Overlay) WriteTo(w io.Writer) (int64, error) { return o.img.writeTo(w) }

// WriteFile writes the file to path; with sparse, all-zero pages stay holes
// (data pages are never zero, so only the header cluster's tail could be).
func (o *Overlay) WriteFile(path string, sparse bool) error {
	if err := o.img.writeFile(path, sparse); err != nil {
		return fmt.Errorf("write overlay: %w", err)
	}
	return nil
}

// NewPagesSince returns the indexes of pages whose content occurs nowhere in
// prev (the header cluster counts as never seen if it changed).
func (o *Overlay) NewPagesSince(prev *Overlay) []int64 {
	out := o.img.newPagesSince(&prev.img)
	// Header pages have seed 0, so the generic oracle skips them; compare
	// their bytes instead, since they change when the file grows.
	var hdr []int64
	for i := int64(0); i < pagesPerCluster; i++ {
		a := o.img.header[i*PageSize : (i+1)*PageSize]
		b := prev.img.header[i*PageSize : (i+1)*PageSize]
		if string(a) != string(b) {
			hdr = append(hdr, i)
		}
	}
	return append(hdr, out...)
}
