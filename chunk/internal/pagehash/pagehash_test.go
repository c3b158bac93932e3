package pagehash

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

func TestSum4(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pattern := func(f func(i int) byte) []byte {
		b := make([]byte, Size)
		for i := range b {
			b[i] = f(i)
		}
		return b
	}
	random := func() []byte {
		b := make([]byte, Size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [4][32]byte
			Sum4(&tc.pages, &got)
			for i, p := range tc.pages {
				if want := blake3.Sum256(p); got[i] != want {
					t.Fatalf("page %d: got %x, want %x", i, got[i], want)
				}
			}
		})
	}
}

func TestSum4_WrongLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a short page")
		}
	}()
	p := make([]byte, Size)
	Sum4(&[4][]byte{p, p, p, p[:10]}, new([4][32]byte))
}

func FuzzSum4(f *testing.F) {
	f.Add([]byte("seed"), uint8(0))
	f.Fuzz(func(t *testing.T, seed []byte, flip uint8) {
		var pages [4][]byte
		for i := range pages {
			pages[i] = bytes.Repeat(append(seed, byte(i), flip), Size)[:Size]
		}
		var got [4][32]byte
		Sum4(&pages, &got)
		for i, p := range pages {
			if want := blake3.Sum256(p); got[i] != want {
				t.Fatalf("page %d: got %x, want %x", i, got[i], want)
			}
		}
	})
}

func BenchmarkSum4(b *testing.B) {
	buf := bytes.Repeat([]byte{1, 2, 3}, 4*Size)
	pages := [4][]byte{buf[:Size], buf[Size : 2*Size], buf[2*Size : 3*Size], buf[3*Size : 4*Size]}
	var out [4][32]byte
	b.Run("pagehash", func(b *testing.B) {
		b.SetBytes(4 * Size)
		for b.Loop() {
			Sum4(&pages, &out)
		}
	})
	b.Run("blake3.Sum256", func(b *testing.B) {
		b.SetBytes(4 * Size)
		for b.Loop() {
			for i := range pages {
				out[i] = blake3.Sum256(pages[i])
			}
		}
	})
}
