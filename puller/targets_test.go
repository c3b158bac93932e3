package puller

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// TestTargetsOf checks the bucketed lookup against a linear scan, for
// target counts around the bucket boundaries and ids repeated in places.
func TestTargetsOf(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 17, 1000, 4099} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			randID := func() (id chunk.ID) {
				for i := range id {
					id[i] = byte(rng.UintN(256))
				}
				return id
			}
			f := &fetch{}
			for i := range n {
				id := randID()
				if i%7 == 3 && i > 0 {
					id = f.targets[rng.IntN(len(f.targets))].id // a repeated chunk
				}
				f.targets = append(f.targets, target{id: id, file: int32(i % 3), offset: int64(i)})
			}
			// Edge ids: all-zero and all-ones prefixes land in the first and last bucket.
			var lo, hi chunk.ID
			for i := range hi {
				hi[i] = 0xff
			}
			f.targets = append(f.targets, target{id: lo}, target{id: hi})
			slices.SortFunc(f.targets, func(a, b target) int { return compareID(a.id, b.id) })
			f.bucketTargets()

			for _, id := range append([]chunk.ID{randID(), lo, hi}, idsOf(f.targets)...) {
				var want []target
				for _, tg := range f.targets {
					if tg.id == id {
						want = append(want, tg)
					}
				}
				if got := f.targetsOf(id); !slices.Equal(got, want) {
					t.Fatalf("targetsOf(%s) = %d targets, want %d", id, len(got), len(want))
				}
			}
		})
	}
}

func idsOf(ts []target) []chunk.ID {
	ids := make([]chunk.ID, len(ts))
	for i, t := range ts {
		ids[i] = t.id
	}
	return ids
}
