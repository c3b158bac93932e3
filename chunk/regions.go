package chunk

import (
	"fmt"
	"slices"
)

// Region is a byte range [Offset, Offset+Length) of a file that may hold
// data. Bytes outside every region of a file are holes: they read as zero
// and the splitter never reads them.
type Region struct {
	Offset int64
	Length int64
}

// End returns the offset just past the region.
func (r Region) End() int64 { return r.Offset + r.Length }

// normalizeRegions clips regions to [0,size), drops empty ones, sorts them
// and merges overlapping or touching ones, so the splitter can walk them with
// a single cursor. nil means the whole file is data. Regions already in that
// form (DataRegions' are) are returned as they are, not copied: a sparse
// 4 GiB memory file has 220000 of them, 3.5 MB the pusher holds too.
func normalizeRegions(regions []Region, size int64) ([]Region, error) {
	if regions == nil {
		if size == 0 {
			return nil, nil
		}
		return []Region{{Offset: 0, Length: size}}, nil
	}
	if normalized(regions, size) {
		return regions, nil
	}
	out := make([]Region, 0, len(regions))
	for _, r := range regions {
		if r.Offset < 0 || r.Length < 0 || r.Offset > size-r.Length {
			return nil, fmt.Errorf("region [%d,+%d) outside file of %d bytes", r.Offset, r.Length, size)
		}
		if r.Length > 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Region) int {
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.Offset <= merged[n-1].End() {
			if r.End() > merged[n-1].End() {
				merged[n-1].Length = r.End() - merged[n-1].Offset
			}
			continue
		}
		merged = append(merged, r)
	}
	return merged, nil
}

// normalized reports whether regions are within [0,size), non-empty,
// sorted, and neither overlap nor touch.
func normalized(regions []Region, size int64) bool {
	prevEnd := int64(-1)
	for _, r := range regions {
		if r.Length <= 0 || r.Offset <= prevEnd || r.Offset > size-r.Length {
			return false
		}
		prevEnd = r.End()
	}
	return true
}
