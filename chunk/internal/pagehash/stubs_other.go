//go:build !amd64 || purego

package pagehash

const (
	hasAVX2   = false
	hasAVX512 = false
)

func hashF(*[8192]byte, uint64, uint64, uint32, *[8]uint32, *[64]uint32, *[8]uint32) {
	panic("pagehash: no AVX2 kernel")
}

func hashP(*[64]uint32, *[64]uint32, uint32, *[8]uint32, *[64]uint32, int) {
	panic("pagehash: no AVX2 kernel")
}

func hash4AVX512(*[Size]byte, *[Size]byte, *[Size]byte, *[Size]byte, *[4][32]byte) {
	panic("pagehash: no AVX-512 kernel")
}
