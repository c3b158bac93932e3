package pack

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
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
	var x Extractor
	return x.extract(entries, func(e Entry) ([]byte, error) {
		if e.BlockOffset < spanOffset || e.BlockEnd()-spanOffset > uint64(len(span)) || e.BlockEnd() < e.BlockOffset {
			return nil, fmt.Errorf("extract chunk %s: block [%d,+%d) outside span [%d,+%d)", e.ID, e.BlockOffset, e.BlockLength, spanOffset, len(span))
		}
		start := e.BlockOffset - spanOffset
		return span[start : start+uint64(e.BlockLength)], nil
	}, fn)
}

// maxStoredBlock bounds a block's stored size as a streaming read trusts
// it: zstd output of MaxBlockRawSize bytes stays far below twice that.
const maxStoredBlock = 2 * MaxBlockRawSize

// Extractor is ExtractChunks for a span that arrives as a stream: it holds
// one block at a time instead of the whole span, so a reader's memory does
// not grow with the ranges it asks for. Its buffers are reused from call
// to call; an Extractor is not safe for concurrent use.
type Extractor struct {
	stored  []byte
	decoded []byte
	ids     []chunk.ID // hashes of one block's chunks
}

// ExtractFrom reads the span starting at pack offset spanOffset from r, in
// order, and does what ExtractChunks does with it. Gaps between the blocks
// entries name are read and discarded; reading stops after the last block.
// A short or failing read is an error wrapping the reader's error.
func (x *Extractor) ExtractFrom(r io.Reader, spanOffset uint64, entries []Entry, fn func(Entry, []byte) error) error {
	pos := spanOffset
	return x.extract(entries, func(e Entry) ([]byte, error) {
		if e.BlockOffset < pos || e.BlockEnd() < e.BlockOffset {
			return nil, fmt.Errorf("extract chunk %s: block [%d,+%d) before the stream position %d", e.ID, e.BlockOffset, e.BlockLength, pos)
		}
		if e.BlockLength > maxStoredBlock {
			return nil, &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("block at %d claims %d stored bytes, limit %d", e.BlockOffset, e.BlockLength, maxStoredBlock)}
		}
		if gap := int64(e.BlockOffset - pos); gap > 0 {
			if _, err := io.CopyN(io.Discard, r, gap); err != nil {
				return nil, fmt.Errorf("extract chunk %s: skip to block at %d: %w", e.ID, e.BlockOffset, eofIsUnexpected(err))
			}
		}
		// Grown as bytes arrive, not to the claimed length up front: a
		// hostile length costs what the stream really holds.
		buf := bytes.NewBuffer(x.stored[:0])
		n, err := buf.ReadFrom(io.LimitReader(r, int64(e.BlockLength)))
		x.stored = buf.Bytes()
		if err == nil && n < int64(e.BlockLength) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fmt.Errorf("extract chunk %s: read block at %d: %w", e.ID, e.BlockOffset, err)
		}
		pos = e.BlockEnd()
		return x.stored, nil
	}, fn)
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// extract is the loop both ExtractChunks and ExtractFrom run: block gives
// the stored bytes of an entry's block, called once per block in pack
// order.
func (x *Extractor) extract(entries []Entry, block func(Entry) ([]byte, error), fn func(Entry, []byte) error) error {
	sorted := sortedEntries(entries)
	for len(sorted) > 0 {
		n := 1
		for n < len(sorted) && sorted[n].BlockOffset == sorted[0].BlockOffset {
			n++
		}
		if err := x.extractBlock(sorted[:n], block, fn); err != nil {
			return err
		}
		sorted = sorted[n:]
	}
	return nil
}

// extractBlock decodes the block that all of group (in offset order) sit
// in, hashes their bytes together (4 KiB chunks go four at a time) and
// hands each to fn after its hash matched, stopping at the first that does
// not.
func (x *Extractor) extractBlock(group []Entry, block func(Entry) ([]byte, error), fn func(Entry, []byte) error) error {
	first := group[0]
	stored, err := block(first)
	if err != nil {
		return err
	}
	raw, err := x.decode(stored)
	if err != nil {
		return &CorruptChunkError{ID: first.ID, Reason: fmt.Sprintf("decode block at %d: %v", first.BlockOffset, err)}
	}
	x.ids = slices.Grow(x.ids[:0], len(group))[:len(group)]
	var sum chunk.Summer
	valid := len(group)
	for i, e := range group {
		if e.BlockLength != first.BlockLength || uint64(e.Offset)+uint64(e.Length) > uint64(len(raw)) {
			valid = i // reported in order below, after the chunks before it
			break
		}
		sum.Add(raw[e.Offset:e.Offset+e.Length], &x.ids[i])
	}
	sum.Flush()
	for i, e := range group {
		if i == valid {
			if e.BlockLength != first.BlockLength {
				return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("block at %d has lengths %d and %d", e.BlockOffset, first.BlockLength, e.BlockLength)}
			}
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("bytes [%d,%d) outside block at %d of %d bytes", e.Offset, uint64(e.Offset)+uint64(e.Length), e.BlockOffset, len(raw))}
		}
		if x.ids[i] != e.ID {
			return &CorruptChunkError{ID: e.ID, Reason: fmt.Sprintf("content hash mismatch (block at %d)", e.BlockOffset)}
		}
		if err := fn(e, raw[e.Offset:e.Offset+e.Length]); err != nil {
			return fmt.Errorf("extract chunk %s: %w", e.ID, err)
		}
	}
	return nil
}

// decode returns the raw bytes of a stored block: a raw block's payload in
// place, a zstd block decoded into the extractor's buffer.
func (x *Extractor) decode(stored []byte) ([]byte, error) {
	if len(stored) > 0 && stored[0] == blockRaw {
		if len(stored)-1 > MaxBlockRawSize {
			return nil, fmt.Errorf("%w: raw block of %d bytes, limit %d", ErrTooLarge, len(stored)-1, MaxBlockRawSize)
		}
		return stored[1:], nil
	}
	raw, err := DecodeBlock(x.decoded[:0], stored, MaxBlockRawSize)
	if err == nil {
		x.decoded = raw
	}
	return raw, err
}

func sortedEntries(entries []Entry) []Entry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.BlockOffset, b.BlockOffset), cmp.Compare(a.Offset, b.Offset))
	})
	return sorted
}
