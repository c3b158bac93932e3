//go:build amd64 && !purego

package pagehash

import "golang.org/x/sys/cpu"

var (
	hasAVX2   = cpu.X86.HasAVX2
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW
)

//go:noescape
func hashF(input *[8192]byte, length, counter uint64, flags uint32, key *[8]uint32, out *[64]uint32, chain *[8]uint32)

//go:noescape
func hashP(left, right *[64]uint32, flags uint32, key *[8]uint32, out *[64]uint32, n int)

// hash4AVX512 sets out[p] to the BLAKE3-256 of page p: it compresses the
// sixteen chunks in sixteen lanes, lane 4p+c being chunk c of page p, then
// the pages' two tree levels, all in one call.
//
//go:noescape
func hash4AVX512(p0, p1, p2, p3 *[Size]byte, out *[4][32]byte)
