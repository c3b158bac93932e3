package pagehash

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// Size is the length of the pages Sum4 hashes.
const Size = 4096

const (
	flagParent = 1 << 2
	flagRoot   = 1 << 3
)

// iv is BLAKE3's key for unkeyed hashing.
var iv = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// The implementations of Sum4.
const (
	kernelGeneric = iota // blake3.Sum256 of each page
	kernelAVX2           // sum4: two hashF and two hashP calls
	kernelAVX512         // hash4AVX512: one call
)

// kernel is the implementation Sum4 uses, the fastest the CPU supports.
// Tests set it to each supported one in turn.
var kernel = func() int {
	switch {
	case hasAVX512:
		return kernelAVX512
	case hasAVX2:
		return kernelAVX2
	}
	return kernelGeneric
}()

// Sum4 sets out[i] to the BLAKE3-256 of pages[i], each exactly Size bytes
// long; it panics on another length.
func Sum4(pages *[4][]byte, out *[4][32]byte) {
	for i := range pages {
		if len(pages[i]) != Size {
			panic("pagehash: page is not 4096 bytes")
		}
	}
	switch kernel {
	case kernelAVX512:
		hash4AVX512((*[Size]byte)(pages[0]), (*[Size]byte)(pages[1]),
			(*[Size]byte)(pages[2]), (*[Size]byte)(pages[3]), out)
	case kernelAVX2:
		sum4(pages, out)
	default:
		for i := range pages {
			out[i] = blake3.Sum256(pages[i])
		}
	}
}

// sum4 hashes pages with the lane-sharing kernels. Chaining values are
// kept as the kernels keep them: word w of lane l at [l+8*w].
func sum4(pages *[4][]byte, out *[4][32]byte) {
	var (
		pair        [2 * Size]byte
		cvs         [2][64]uint32 // the 16 chunk chaining values
		chain       [8]uint32
		left, right [64]uint32
		mid, root   [64]uint32
	)
	for p := range 2 {
		hashF(adjacent(pages[2*p], pages[2*p+1], &pair), 2*Size, 0, 0, &iv, &cvs[p], &chain)
	}
	// Level 1: lane l joins chunks 2l and 2l+1 (of all 16, in page order).
	for l := range 8 {
		src := &cvs[l/4]
		a, b := 2*(l%4), 2*(l%4)+1
		for w := range 8 {
			left[l+8*w] = src[a+8*w]
			right[l+8*w] = src[b+8*w]
		}
	}
	hashP(&left, &right, flagParent, &iv, &mid, 8)
	// Level 2, the roots: lane p joins page p's two halves.
	for p := range 4 {
		for w := range 8 {
			left[p+8*w] = mid[2*p+8*w]
			right[p+8*w] = mid[2*p+1+8*w]
		}
	}
	hashP(&left, &right, flagParent|flagRoot, &iv, &root, 4)
	for p := range 4 {
		for w := range 8 {
			binary.LittleEndian.PutUint32(out[p][4*w:], root[p+8*w])
		}
	}
}

// adjacent returns a and b as one array: in place when b follows a in
// memory (neighbouring pages of one read buffer), else copied into buf.
func adjacent(a, b []byte, buf *[2 * Size]byte) *[2 * Size]byte {
	if cap(a) >= 2*Size && &a[:2*Size][Size] == &b[0] {
		return (*[2 * Size]byte)(a[:2*Size])
	}
	copy(buf[:Size], a)
	copy(buf[Size:], b)
	return buf
}
