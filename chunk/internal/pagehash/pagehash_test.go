package pagehash

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

type namedKernel struct {
	name string
	k    int
}

// kernels are the implementations of Sum4 this CPU (and build) supports.
func kernels() []namedKernel {
	ks := []namedKernel{{"generic", kernelGeneric}}
	if hasAVX2 {
		ks = append(ks, namedKernel{"avx2", kernelAVX2})
	}
	if hasAVX512 {
		ks = append(ks, namedKernel{"avx512", kernelAVX512})
	}
	return ks
}

// useKernel makes Sum4 use k until the end of the test.
func useKernel(tb testing.TB, k int) {
	saved := kernel
	kernel = k
	tb.Cleanup(func() { kernel = saved })
}

// forEachKernel runs f as a subtest with Sum4 using each supported kernel.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	for _, k := range kernels() {
		t.Run(k.name, func(t *testing.T) {
			useKernel(t, k.k)
			f(t)
		})
	}
}

// check fails t unless Sum4 gives blake3.Sum256 of each page.
func check(t *testing.T, pages [4][]byte) {
	t.Helper()
	var got [4][32]byte
	Sum4(&pages, &got)
	for i, p := range pages {
		if want := blake3.Sum256(p); got[i] != want {
			t.Fatalf("page %d: got %x, want %x", i, got[i], want)
		}
	}
}

func randomPage(rng *rand.Rand) []byte {
	b := make([]byte, Size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestDispatch checks that Sum4 uses the fastest kernel the CPU supports.
func TestDispatch(t *testing.T) {
	ks := kernels()
	if best := ks[len(ks)-1]; kernel != best.k {
		t.Errorf("Sum4 uses kernel %d, want %s", kernel, best.name)
	}
	t.Logf("supported: %v", ks)
}

func TestSum4(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pattern := func(f func(i int) byte) []byte {
		b := make([]byte, Size)
		for i := range b {
			b[i] = f(i)
		}
		return b
	}
	random := func() []byte { return randomPage(rng) }
	zero := make([]byte, Size)
	cases := []struct {
		name  string
		pages [4][]byte
	}{
		{"zero", [4][]byte{zero, zero, zero, zero}},
		{"random", [4][]byte{random(), random(), random(), random()}},
		{"adjacent", func() [4][]byte {
			b := random()
			b = append(b, random()...)
			b = append(b, random()...)
			b = append(b, random()...)
			return [4][]byte{b[:Size], b[Size : 2*Size], b[2*Size : 3*Size], b[3*Size:]}
		}()},
		{"adjacent out of order", func() [4][]byte {
			b := append(random(), random()...)
			return [4][]byte{b[Size:], b[:Size], random(), random()}
		}()},
		{"same", func() [4][]byte { b := random(); return [4][]byte{b, b, b, b} }()},
		{"patterns", [4][]byte{
			pattern(func(i int) byte { return byte(i) }),
			pattern(func(i int) byte { return byte(i >> 8) }),
			pattern(func(i int) byte { return 0xff }),
			pattern(func(i int) byte { return byte(i * 7) }),
		}},
		{"words", [4][]byte{
			// Each 32-bit word holds its own index, page and chunk, so a
			// word taken from the wrong lane or position shows.
			pattern(func(i int) byte { return byte(i/4) ^ byte(i%4)<<6 }),
			pattern(func(i int) byte { return byte(i/4) ^ byte(i%4)<<6 ^ 0x11 }),
			pattern(func(i int) byte { return byte(i/4+i/1024) ^ byte(i%4)<<6 }),
			pattern(func(i int) byte { return byte(i/4+2*i/1024) ^ byte(i%4)<<6 ^ 0x22 }),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachKernel(t, func(t *testing.T) { check(t, tc.pages) })
		})
	}
}

// TestSum4_Boundaries sets single bytes at the edges of blocks, words and
// lanes (chunks) of one page, the others being zero or random, so that a
// byte read into the wrong lane, word or block changes a digest.
func TestSum4_Boundaries(t *testing.T) {
	var offsets []int
	for c := range 4 {
		for _, o := range []int{0, 1, 3, 4, 63, 64, 511, 512, 959, 960, 1020, 1023} {
			offsets = append(offsets, 1024*c+o)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	forEachKernel(t, func(t *testing.T) {
		for _, background := range []string{"zero", "random"} {
			for page := range 4 {
				for _, off := range offsets {
					var pages [4][]byte
					for i := range pages {
						if background == "zero" {
							pages[i] = make([]byte, Size)
						} else {
							pages[i] = randomPage(rng)
						}
					}
					pages[page][off] ^= 0x80
					t.Run(fmt.Sprintf("%s/page%d/%d", background, page, off), func(t *testing.T) {
						check(t, pages)
					})
				}
			}
		}
	})
}

func TestSum4_Seeds(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		for seed := range uint64(200) {
			rng := rand.New(rand.NewPCG(seed, 7))
			check(t, [4][]byte{randomPage(rng), randomPage(rng), randomPage(rng), randomPage(rng)})
		}
	})
}

// TestSum4_Kernels checks that the kernels agree with each other as well,
// on pages of one buffer at every page alignment within it.
func TestSum4_Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	buf := make([]byte, 5*Size)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for _, shift := range []int{0, 1, 4, 32, 63, 64, 1024, Size - 1} {
		b := buf[shift:]
		pages := [4][]byte{b[:Size], b[Size : 2*Size], b[2*Size : 3*Size], b[3*Size : 4*Size]}
		var ref [4][32]byte
		for _, k := range kernels() {
			useKernel(t, k.k)
			var got [4][32]byte
			Sum4(&pages, &got)
			if k.k == kernelGeneric {
				ref = got
			} else if got != ref {
				t.Errorf("shift %d: %s differs from generic", shift, k.name)
			}
		}
	}
}

func TestSum4_WrongLength(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic for a short page")
			}
		}()
		p := make([]byte, Size)
		Sum4(&[4][]byte{p, p, p, p[:10]}, new([4][32]byte))
	})
}

func FuzzSum4(f *testing.F) {
	f.Add([]byte("seed"), uint8(0), uint16(0))
	f.Add([]byte{}, uint8(1), uint16(1023))
	f.Add([]byte{0xff, 0, 0x80}, uint8(2), uint16(4095))
	f.Fuzz(func(t *testing.T, seed []byte, flip uint8, at uint16) {
		var pages [4][]byte
		for i := range pages {
			pages[i] = bytes.Repeat(append(seed, byte(i), flip), Size)[:Size]
		}
		pages[flip%4][int(at)%Size] ^= 1
		forEachKernel(t, func(t *testing.T) { check(t, pages) })
	})
}

func BenchmarkSum4(b *testing.B) {
	buf := bytes.Repeat([]byte{1, 2, 3}, 4*Size)
	pages := [4][]byte{buf[:Size], buf[Size : 2*Size], buf[2*Size : 3*Size], buf[3*Size : 4*Size]}
	var out [4][32]byte
	for _, bc := range []struct {
		name string
		k    int
		ok   bool
	}{
		{"avx512", kernelAVX512, hasAVX512},
		{"avx2", kernelAVX2, hasAVX2},
		{"blake3.Sum256", kernelGeneric, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if !bc.ok {
				b.Skip("not supported here")
			}
			useKernel(b, bc.k)
			b.SetBytes(4 * Size)
			for b.Loop() {
				Sum4(&pages, &out)
			}
		})
	}
}
