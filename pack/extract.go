package pack

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// Run is a contiguous byte range of a pack to fetch with one ranged read,
// and the entries whose blocks lie in it (sorted by block offset).
type Run struct {
	Offset  uint64
	Length  uint64
	Entries []Entry
}

// PlanRuns sorts entries by position and coalesces their blocks into runs:
// neighbours whose gap is at most maxGap bytes share a run, trading a few
// unwanted bytes for one request less.
func PlanRuns(entries []Entry, maxGap uint64) []Run {
	sorted := sortedEntries(entries)
	var runs []Run
	start := 0
	for i, e := range sorted {
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			end := last.Offset + last.Length
			if e.BlockOffset <= end || e.BlockOffset-end <= maxGap {
				last.Length = max(end, e.BlockEnd()) - last.Offset
				continue
			}
			last.Entries = sorted[start:i:i]
		}
		runs = append(runs, Run{Offset: e.BlockOffset, Length: uint64(e.BlockLength)})
		start = i
	}
	if n := len(runs); n > 0 {
		runs[n-1].Entries = sorted[start:]
	}
	return runs
}

// ExtractChunks decodes the chunks of entries from span, the bytes of a
// pack starting at offset spanOffset (typically one Run). Each block is
// decoded once; each chunk is hashed and must equal its ID before fn sees
// it, so nothing unverified is ever returned. fn is called in pack order;
// its data is valid only during the call. The first failure stops the
// extraction: a block that does not decode or a chunk that does not match
// yields a *CorruptChunkError; an error from fn is returned wrapped.
func ExtractChunks(span []byte, spanOffset uint64, entries []Entry, fn func(Entry, []byte) error) error {
	var (
		buf     []byte
		block   []byte
		decErr  error
		cur     Entry
		started bool
	)
	for _, e := range sortedEntries(entries) {
		if !started || e.BlockOffset != cur.BlockOffset {
			started, cur = true, e
			if e.BlockOffset < spanOffset || e.BlockEnd()-spanOffset > uint64(len(span)) || e.BlockEnd() < e.BlockOffset {
				return fmt.Errorf("extract chunk %s: block [%d,+%d) outside span [%d,+%d)", e.ID, e.BlockOffset, e.BlockLength, spanOffset, len(span))
			}
			start := e.BlockOffset - spanOffset
			block, decErr = DecodeBlock(buf[:0], span[start:start+uint64(e.BlockLength)], MaxBlockRawSize)
			if decErr == nil {
				buf = block
			}
		}
		if decErr != nil {
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("decode block at %d: %v", e.BlockOffset, decErr)}
		}
		if e.BlockLength != cur.BlockLength {
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("block at %d has lengths %d and %d", e.BlockOffset, cur.BlockLength, e.BlockLength)}
		}
		end := uint64(e.Offset) + uint64(e.Length)
		if end > uint64(len(block)) {
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("bytes [%d,%d) outside block at %d of %d bytes", e.Offset, end, e.BlockOffset, len(block))}
		}
		data := block[e.Offset:end]
		if chunk.Sum(data) != e.ID {
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("content hash mismatch (block at %d)", e.BlockOffset)}
		}
		if err := fn(e, data); err != nil {
			return fmt.Errorf("extract chunk %s: %w", e.ID, err)
		}
	}
	return nil
}

func sortedEntries(entries []Entry) []Entry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.BlockOffset, b.BlockOffset), cmp.Compare(a.Offset, b.Offset))
	})
	return sorted
}
