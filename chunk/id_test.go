package chunk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestHasher(t *testing.T) {
	data := bytes.Repeat([]byte("epoch-dedup "), 20000) // 240 KB: several BLAKE3 chunks
	for _, cuts := range [][]int{nil, {0}, {1}, {1024}, {1, 2, 3, 70000}, {len(data)}} {
		h := NewHasher()
		prev := 0
		for _, c := range cuts {
			_, _ = h.Write(data[prev:c])
			prev = c
		}
		_, _ = h.Write(data[prev:])
		if got, want := h.Sum(), Sum(data); got != want {
			t.Errorf("cuts %v: Sum %s, want %s", cuts, got, want)
		}
	}
	if got, want := NewHasher().Sum(), Sum(nil); got != want {
		t.Errorf("empty: %s, want %s", got, want)
	}
}

func TestSummer(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	piece := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, lengths := range [][]int{
		{},
		{4096},
		{4096, 4096, 4096},
		{4096, 4096, 4096, 4096},
		{4096, 100, 4096, 4096, 8192, 4096, 4096, 0, 4096, 4096},
		{4095, 4097, 65536},
	} {
		t.Run(fmt.Sprint(lengths), func(t *testing.T) {
			var s Summer
			ids := make([]ID, len(lengths))
			data := make([][]byte, len(lengths))
			for i, n := range lengths {
				data[i] = piece(n)
				s.Add(data[i], &ids[i])
			}
			s.Flush()
			for i := range data {
				if want := Sum(data[i]); ids[i] != want {
					t.Fatalf("chunk %d (%d bytes): got %s, want %s", i, len(data[i]), ids[i], want)
				}
			}
		})
	}
}
