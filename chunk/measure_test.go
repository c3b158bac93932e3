package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// TestMeasureDedup reproduces the "Measurements" section of doc.go. It is
// slow (tens of seconds) and runs only with EPOCH_MEASURE=1:
//
//	EPOCH_MEASURE=1 go test -run TestMeasureDedup -v ./chunk/
func TestMeasureDedup(t *testing.T) {
	if os.Getenv("EPOCH_MEASURE") == "" {
		t.Skip("set EPOCH_MEASURE=1 to run the chunk-size measurement")
	}
	const size = 256 << 20
	configs := []Params{
		FixedPage(),
		{Method: Fixed, Size: 16 << 10},
		{Method: Fixed, Size: 64 << 10},
		{Method: CDC, Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10, Pol: testPol},
		SmallCDC(testPol),
		{Method: CDC, Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20, Pol: testPol},
		ResticCDC(testPol),
	}
	for _, layout := range []string{"scattered", "clustered"} {
		base := measureImage(size, layout)
		t.Logf("layout %s: 256 MiB, 30%% zero pages", layout)
		t.Logf("%-20s %9s %9s %9s %10s", "params", "0.1%", "1%", "5%", "chunks")
		for _, p := range configs {
			baseIDs, n := measureIDs(t, base, p)
			row := fmt.Sprintf("%-20s", p)
			for _, dirty := range []float64{0.001, 0.01, 0.05} {
				v2 := dirtyPages(base, dirty)
				ids, _ := measureIDs(t, v2, p)
				var added int
				for id, l := range ids {
					if _, ok := baseIDs[id]; !ok {
						added += l
					}
				}
				row += fmt.Sprintf(" %8.1f%%", 100*float64(added)/size)
			}
			t.Logf("%s %10d", row, n)
		}
	}
}

// measureImage returns an image with 30% zero pages, either scattered one
// by one or in runs of 1..128 pages (guest free memory is clustered).
func measureImage(size int, layout string) []byte {
	rng := rand.New(rand.NewPCG(11, 12))
	b := make([]byte, size)
	for off := 0; off < size; {
		run := 1
		if layout == "clustered" {
			run = 1 + rng.IntN(128)
		}
		end := min(off+run*PageSize, size)
		if rng.Float64() >= 0.3 {
			for i := off; i < end; i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < end; j++ {
					b[i+j] = byte(v >> (8 * j))
				}
			}
		}
		off = end
	}
	return b
}

func dirtyPages(base []byte, frac float64) []byte {
	rng := rand.New(rand.NewPCG(uint64(frac*1e6), 99))
	v := bytes.Clone(base)
	pages := len(v) / PageSize
	for range int(frac * float64(pages)) {
		p := rng.IntN(pages)
		page := v[p*PageSize : (p+1)*PageSize]
		for i := range page {
			page[i] = byte(rng.Uint32())
		}
	}
	return v
}

func measureIDs(t *testing.T, data []byte, p Params) (map[ID]int, int) {
	s, err := NewSplitter(bytes.NewReader(data), int64(len(data)), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[ID]int{}
	n := 0
	for {
		cs, err := s.NextBatch()
		if errors.Is(err, io.EOF) {
			return ids, n
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if !c.Zero {
				ids[c.ID] = c.Length
				n++
			}
		}
	}
}
