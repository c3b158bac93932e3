package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// Format constants; see doc.go for the layout.
const (
	// Magic starts and ends every pack.
	Magic = "EDPK"
	// Version is the format version this package writes and reads.
	Version = 1
	// HeaderSize is the length of the header: magic (4) and version (1).
	HeaderSize = 5
	// FooterSize is the fixed length of the footer: four uint32, version, magic.
	FooterSize = 21
	// DefaultTailSize is a good first ranged read for ParseTail: it holds
	// the table of a pack of about 1500 chunks.
	DefaultTailSize = 64 << 10

	// MaxChunkSize is the largest chunk Add accepts (chunk.MaxChunkSize).
	MaxChunkSize = chunk.MaxChunkSize
	// MaxBlockRawSize bounds the decoded size of any block; readers refuse
	// larger claims before allocating.
	MaxBlockRawSize = 32 << 20
	// MaxTableRawSize bounds the decoded table (about 480,000 chunks).
	MaxTableRawSize = 16 << 20

	blockRaw  byte = 0
	blockZstd byte = 1

	minEntrySize = chunk.IDSize + 1 // ID and a one-byte length varint
)

// Entry locates one chunk in a pack: its block (stored bytes at
// [BlockOffset, BlockOffset+BlockLength), type byte included) and its bytes
// [Offset, Offset+Length) inside the decoded block.
type Entry struct {
	ID          chunk.ID
	BlockOffset uint64
	BlockLength uint32
	Offset      uint32
	Length      uint32
}

// BlockEnd returns the pack offset just past the entry's block.
func (e Entry) BlockEnd() uint64 { return e.BlockOffset + uint64(e.BlockLength) }

// castagnoli is the CRC32C table: immutable after creation, shared.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decoder is shared by all readers. It is created once, never reconfigured,
// and zstd.Decoder.DecodeAll is safe for concurrent use; DecodeAllCapLimit
// makes every call stop at the capacity the caller passes, which is how
// hostile frames are kept from allocating.
var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxBlockRawSize),
		zstd.WithDecoderMaxWindow(MaxBlockRawSize),
	)
})

// decodeZstd appends the decoding of the zstd frame src to dst, never
// producing or allocating more than maxRaw bytes. A frame that declares its
// size gets exactly that capacity and must fill it. klauspost's EncodeAll
// leaves the size out of frames under 256 bytes, so a frame without one is
// first decoded into a small buffer and only retried with maxRaw when it
// does not fit.
func decodeZstd(dst, src []byte, maxRaw int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("%w: zstd header: %w", ErrCorrupt, err)
	}
	if h.HasFCS && h.FrameContentSize > uint64(maxRaw) {
		return nil, fmt.Errorf("%w: zstd frame of %d bytes, limit %d", ErrTooLarge, h.FrameContentSize, maxRaw)
	}
	dec, err := decoder()
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	start := len(dst)
	decode := func(n int) ([]byte, error) {
		dst = slices.Grow(dst, n)
		return dec.DecodeAll(src, dst[:start:start+n])
	}
	var out []byte
	if h.HasFCS {
		out, err = decode(int(h.FrameContentSize))
		if err == nil && uint64(len(out)-start) != h.FrameContentSize {
			return nil, fmt.Errorf("%w: zstd frame gave %d bytes, declared %d", ErrCorrupt, len(out)-start, h.FrameContentSize)
		}
	} else {
		const small = 1 << 10
		out, err = decode(min(small, maxRaw))
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) && maxRaw > small {
			out, err = decode(maxRaw)
		}
	}
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return nil, fmt.Errorf("%w: zstd frame over %d bytes", ErrTooLarge, maxRaw)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %w", ErrCorrupt, err)
	}
	return out, nil
}

// DecodeBlock appends the decoded bytes of one stored block (type byte and
// payload) to dst. A block that would decode to more than maxRaw bytes is
// refused with ErrTooLarge before anything is allocated for it.
func DecodeBlock(dst []byte, block []byte, maxRaw int) ([]byte, error) {
	if len(block) == 0 {
		return nil, fmt.Errorf("%w: empty block", ErrCorrupt)
	}
	payload := block[1:]
	switch block[0] {
	case blockRaw:
		if len(payload) > maxRaw {
			return nil, fmt.Errorf("%w: raw block of %d bytes, limit %d", ErrTooLarge, len(payload), maxRaw)
		}
		return append(dst, payload...), nil
	case blockZstd:
		return decodeZstd(dst, payload, maxRaw)
	}
	return nil, fmt.Errorf("%w: unknown block type %d", ErrCorrupt, block[0])
}

// footer is the fixed-size end of a pack, little-endian:
//
//	tableLen    uint32  stored (compressed) table bytes before the footer
//	tableRaw    uint32  decoded table bytes
//	count       uint32  number of chunks
//	checksum    uint32  CRC32C of the stored table and the 12 bytes above
//	version     uint8
//	magic       "EDPK"
type footer struct {
	tableLen, tableRaw, count, checksum uint32
	version                             byte
}

func (f footer) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, f.tableLen)
	b = binary.LittleEndian.AppendUint32(b, f.tableRaw)
	b = binary.LittleEndian.AppendUint32(b, f.count)
	b = binary.LittleEndian.AppendUint32(b, f.checksum)
	b = append(b, f.version)
	return append(b, Magic...)
}

func tableChecksum(table, footerHead []byte) uint32 {
	return crc32.Update(crc32.Checksum(table, castagnoli), castagnoli, footerHead)
}

// TailID returns the id of the pack data: the BLAKE3 of its tail, the
// stored table and the footer. The table names every chunk, with the
// stored length of every block, so the id commits to what the pack holds
// and where; the blocks themselves are verified chunk by chunk against
// their ids when read. Hashing the tail instead of the whole pack saves a
// push a BLAKE3 pass over every byte it uploads. Packs that earlier
// writers named by the BLAKE3 of all their bytes (chunk.Sum) stay valid:
// readers never derive an id from a pack, and a store check accepts
// either name.
func TailID(data []byte) (chunk.ID, error) {
	if len(data) < HeaderSize+FooterSize {
		return chunk.ID{}, fmt.Errorf("%w: pack of %d bytes is shorter than header and footer", ErrCorrupt, len(data))
	}
	tableLen := int64(binary.LittleEndian.Uint32(data[len(data)-FooterSize:]))
	if int64(len(data))-FooterSize-tableLen < HeaderSize {
		return chunk.ID{}, fmt.Errorf("%w: table of %d bytes does not fit in pack of %d", ErrCorrupt, tableLen, len(data))
	}
	return chunk.Sum(data[int64(len(data))-FooterSize-tableLen:]), nil
}

// ParseTail parses a pack's table from its last bytes. tail is the last
// min(packSize, n) bytes of a pack of packSize bytes; when the table does
// not fit in tail, a *ShortTailError says how many bytes to read instead.
// Every length is bound-checked against the pack size and the format
// limits before anything is allocated, and the footer checksum is verified
// before the table is decoded. The entries are in pack order.
func ParseTail(tail []byte, packSize int64) ([]Entry, error) {
	if packSize < int64(HeaderSize+FooterSize) {
		return nil, fmt.Errorf("%w: pack of %d bytes is shorter than header and footer", ErrCorrupt, packSize)
	}
	if int64(len(tail)) > packSize {
		return nil, fmt.Errorf("parse pack tail: tail of %d bytes is longer than the pack (%d)", len(tail), packSize)
	}
	if len(tail) < FooterSize {
		return nil, &ShortTailError{Need: int64(FooterSize)}
	}
	fb := tail[len(tail)-FooterSize:]
	if string(fb[17:]) != Magic {
		return nil, fmt.Errorf("%w: footer ends with %q", ErrBadMagic, fb[17:])
	}
	f := footer{
		tableLen: binary.LittleEndian.Uint32(fb[0:]),
		tableRaw: binary.LittleEndian.Uint32(fb[4:]),
		count:    binary.LittleEndian.Uint32(fb[8:]),
		checksum: binary.LittleEndian.Uint32(fb[12:]),
		version:  fb[16],
	}
	if f.version != Version {
		return nil, fmt.Errorf("%w: version %d, this reader knows %d", ErrVersion, f.version, Version)
	}
	blocksEnd := packSize - FooterSize - int64(f.tableLen)
	if blocksEnd < int64(HeaderSize) {
		return nil, fmt.Errorf("%w: table of %d bytes does not fit in pack of %d", ErrCorrupt, f.tableLen, packSize)
	}
	if f.tableRaw > MaxTableRawSize {
		return nil, fmt.Errorf("%w: table of %d decoded bytes, limit %d", ErrTooLarge, f.tableRaw, MaxTableRawSize)
	}
	if uint64(f.count)*minEntrySize > uint64(f.tableRaw) {
		return nil, fmt.Errorf("%w: %d chunks cannot fit in a table of %d bytes", ErrCorrupt, f.count, f.tableRaw)
	}
	need := int64(f.tableLen) + FooterSize
	if int64(len(tail)) < need {
		return nil, &ShortTailError{Need: need}
	}
	table := tail[int64(len(tail))-need : len(tail)-FooterSize]
	if sum := tableChecksum(table, fb[:12]); sum != f.checksum {
		return nil, fmt.Errorf("%w: crc32c %08x, footer says %08x", ErrChecksum, sum, f.checksum)
	}
	if int64(len(tail)) == packSize {
		// The whole pack is here: check its header too.
		if string(tail[:len(Magic)]) != Magic {
			return nil, fmt.Errorf("%w: header starts with %q", ErrBadMagic, tail[:len(Magic)])
		}
		if tail[len(Magic)] != Version {
			return nil, fmt.Errorf("%w: header version %d, footer %d", ErrCorrupt, tail[len(Magic)], f.version)
		}
	}
	raw, err := decodeZstd(nil, table, int(f.tableRaw))
	if err != nil {
		return nil, fmt.Errorf("decode pack table: %w", err)
	}
	if len(raw) != int(f.tableRaw) {
		return nil, fmt.Errorf("%w: table decoded to %d bytes, footer says %d", ErrCorrupt, len(raw), f.tableRaw)
	}
	return parseTable(raw, int(f.count), uint64(blocksEnd))
}

// parseTable decodes the table: uvarint block count, then per block its
// stored length and chunk count (uvarints), then per chunk its ID and
// length (uvarint). Blocks are contiguous from HeaderSize to blocksEnd and
// a block's chunks are its decoded bytes in order, so offsets are implied
// and cannot disagree.
func parseTable(raw []byte, count int, blocksEnd uint64) ([]Entry, error) {
	r := tableReader{b: raw}
	nblocks := r.uvarint(uint64(count))
	entries := make([]Entry, 0, count)
	off := uint64(HeaderSize)
	for range nblocks {
		if r.err != nil {
			break
		}
		stored := r.uvarint(blocksEnd - off)
		n := r.uvarint(uint64(count - len(entries)))
		if r.err == nil && (stored < 2 || n == 0) {
			r.err = fmt.Errorf("block at %d: %d stored bytes, %d chunks", off, stored, n)
		}
		var inner uint64
		for range n {
			if r.err != nil {
				break
			}
			var id chunk.ID
			r.read(id[:])
			length := r.uvarint(MaxChunkSize)
			if r.err == nil && length == 0 {
				r.err = fmt.Errorf("chunk %s: zero length", id)
			}
			if r.err == nil && inner+length > MaxBlockRawSize {
				r.err = fmt.Errorf("block at %d: more than %d decoded bytes", off, MaxBlockRawSize)
			}
			entries = append(entries, Entry{ID: id, BlockOffset: off, BlockLength: uint32(stored), Offset: uint32(inner), Length: uint32(length)})
			inner += length
		}
		off += stored
	}
	switch {
	case r.err != nil:
	case len(r.b) != 0:
		r.err = fmt.Errorf("%d bytes after the last block", len(r.b))
	case off != blocksEnd:
		r.err = fmt.Errorf("blocks end at %d, table starts at %d", off, blocksEnd)
	case len(entries) != count:
		r.err = fmt.Errorf("%d chunks, footer says %d", len(entries), count)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: table: %w", ErrCorrupt, r.err)
	}
	return entries, nil
}

// tableReader reads varints and bytes, keeping the first error.
type tableReader struct {
	b   []byte
	err error
}

func (r *tableReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad varint at %d bytes from the end", len(r.b))
		return 0
	}
	if v > limit {
		r.err = fmt.Errorf("value %d over limit %d", v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tableReader) read(p []byte) {
	if r.err != nil {
		return
	}
	if len(r.b) < len(p) {
		r.err = fmt.Errorf("table ends inside an id")
		return
	}
	r.b = r.b[copy(p, r.b):]
}
