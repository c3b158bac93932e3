package index

import "testing"

func TestIDRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 11, 1 << 10} {
		var next uint64
		for r := range n {
			lo, hi := idRange(r, n)
			if lo != next || hi <= lo {
				t.Fatalf("n=%d r=%d: [%d, %d) after %d", n, r, lo, hi, next)
			}
			next = hi
		}
		if next != 1<<32 {
			t.Fatalf("n=%d: ranges end at %d, want 1<<32", n, next)
		}
	}
}
