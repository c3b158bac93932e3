package chunk

import "encoding/binary"

// PageSize is the granularity of zero detection: guest memory and disk
// images are written in 4 KiB pages, and Cocoon stores memory sparse at this
// size, so an all-zero page is the unit worth never hashing or storing.
const PageSize = 4096

// IsZero reports whether every byte of b is zero.
//
// It ORs eight 64-bit words per step and stops at the first non-zero
// 64-byte block, so a data page usually fails within its first few words
// while a zero page is scanned at memory bandwidth (BenchmarkIsZero).
func IsZero(b []byte) bool {
	for len(b) >= 64 {
		v := binary.LittleEndian.Uint64(b[0:]) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:]) |
			binary.LittleEndian.Uint64(b[32:]) | binary.LittleEndian.Uint64(b[40:]) |
			binary.LittleEndian.Uint64(b[48:]) | binary.LittleEndian.Uint64(b[56:])
		if v != 0 {
			return false
		}
		b = b[64:]
	}
	var v byte
	for _, c := range b {
		v |= c
	}
	return v == 0
}
