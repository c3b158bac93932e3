package pack

import (
	"errors"
	"fmt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// Sentinel errors. Each failure has its own; none of them is ever returned
// together with data.
var (
	// ErrCorrupt: the pack's structure is inconsistent (lengths, offsets,
	// counts, block contents) or a chunk fails its hash check.
	ErrCorrupt = errors.New("corrupt pack")
	// ErrBadMagic: the bytes are not a pack (wrong magic in footer or header).
	ErrBadMagic = errors.New("bad pack magic")
	// ErrVersion: the pack was written by a newer, unknown format version.
	ErrVersion = errors.New("unsupported pack version")
	// ErrChecksum: the table or footer does not match the footer checksum.
	ErrChecksum = errors.New("pack table checksum mismatch")
	// ErrTooLarge: a length exceeds the format's limits; refused before
	// allocating.
	ErrTooLarge = errors.New("pack length too large")
	// ErrShortTail is wrapped by ShortTailError.
	ErrShortTail = errors.New("pack tail too short")
)

// ShortTailError is returned by ParseTail when the tail given does not hold
// the whole table: read the last Need bytes of the pack and call again.
type ShortTailError struct {
	Need int64
}

func (e *ShortTailError) Error() string {
	return fmt.Sprintf("pack tail too short: need the last %d bytes", e.Need)
}

// Unwrap returns ErrShortTail.
func (e *ShortTailError) Unwrap() error { return ErrShortTail }

// CorruptChunkError reports a chunk whose bytes could not be decoded or do
// not hash to its ID. It wraps ErrCorrupt; the caller adds the pack name.
type CorruptChunkError struct {
	ID     chunk.ID
	Reason string
}

func (e *CorruptChunkError) Error() string {
	return "corrupt chunk " + e.ID.String() + ": " + e.Reason
}

// Unwrap returns ErrCorrupt.
func (e *CorruptChunkError) Unwrap() error { return ErrCorrupt }
