package chunk

import (
	"bytes"
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
