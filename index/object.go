package index

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

const (
	// ObjectVersion is the index object format version.
	ObjectVersion = 1
	// MaxObjectPacks bounds the packs of one index object.
	MaxObjectPacks = 1 << 16
	// MaxObjectEntries bounds the entries of one index object, summed over
	// its packs (16 Mi chunks: 64 GiB of new data at 4 KiB).
	MaxObjectEntries = 1 << 24

	objectMagic       = "EDIX"
	objectHeaderSize  = 16 // magic, version, reserved(3), raw length(4), body length(4)
	objectTrailerSize = 4  // CRC-32C of everything before it
	objectWindow      = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeIndexObject encodes the tables of packs, the index object a push
// writes next to its packs so other nodes learn where chunks are without
// reading pack trailers.
//
// Layout: "EDIX", version u8, 3 reserved bytes (0), raw body length u32 LE,
// compressed body length u32 LE, zstd body, CRC-32C (LE) of all preceding
// bytes. Body: uvarint pack count; per pack its 32-byte id, uvarint size,
// uvarint entry count, and per entry the 32-byte chunk id and uvarints
// block offset, block length, offset, length.
func EncodeIndexObject(packs []PackRecord) ([]byte, error) {
	if len(packs) > MaxObjectPacks {
		return nil, fmt.Errorf("encode index object: %w: %d packs, limit %d", ErrInvalidArgument, len(packs), MaxObjectPacks)
	}
	total := 0
	for i := range packs {
		if err := checkPack(&packs[i]); err != nil {
			return nil, fmt.Errorf("encode index object: pack %d: %w", i, err)
		}
		total += len(packs[i].Entries)
	}
	if total > MaxObjectEntries {
		return nil, fmt.Errorf("encode index object: %w: %d entries, limit %d", ErrInvalidArgument, total, MaxObjectEntries)
	}
	raw := make([]byte, 0, binary.MaxVarintLen64+len(packs)*(chunk.IDSize+20)+total*(chunk.IDSize+16))
	raw = binary.AppendUvarint(raw, uint64(len(packs)))
	for _, p := range packs {
		raw = append(raw, p.Pack[:]...)
		raw = binary.AppendUvarint(raw, uint64(p.Size))
		raw = binary.AppendUvarint(raw, uint64(len(p.Entries)))
		for _, e := range p.Entries {
			raw = append(raw, e.ID[:]...)
			raw = binary.AppendUvarint(raw, e.BlockOffset)
			raw = binary.AppendUvarint(raw, uint64(e.BlockLength))
			raw = binary.AppendUvarint(raw, uint64(e.Offset))
			raw = binary.AppendUvarint(raw, uint64(e.Length))
		}
	}
	if len(raw) > math.MaxUint32 {
		return nil, fmt.Errorf("encode index object: %w: body of %d bytes", ErrInvalidArgument, len(raw))
	}
	enc, err := objectEncoder()
	if err != nil {
		return nil, fmt.Errorf("encode index object: %w", err)
	}
	out := make([]byte, objectHeaderSize, objectHeaderSize+len(raw)+64)
	copy(out, objectMagic)
	out[4] = ObjectVersion
	binary.LittleEndian.PutUint32(out[8:], uint32(len(raw)))
	out = enc.EncodeAll(raw, out)
	binary.LittleEndian.PutUint32(out[12:], uint32(len(out)-objectHeaderSize))
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// objectEncoder is created on first use and only used through EncodeAll,
// which is safe for concurrent use: a push writes an index object per pack,
// and a fresh encoder would allocate and clear its window every time. Its
// level is the fastest: the chunk ids, most of an object, do not compress,
// and the default level took 2.4 ms per 4096-entry object against 0.17 ms,
// for 10 % fewer bytes (161 KB against 178 KB; 2-core VM).
var objectEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(objectWindow),
		zstd.WithEncoderLevel(zstd.SpeedFastest))
})

// DecodeIndexObject decodes an index object. It checks magic, version,
// length and CRC-32C before decompressing, parses the body as a stream so
// memory follows the entries actually present, and checks every entry as
// AddPack would.
func DecodeIndexObject(data []byte) ([]PackRecord, error) {
	rawLen, body, err := openObject(data)
	if err != nil {
		return nil, fmt.Errorf("decode index object: %w", err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(body),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(objectWindow))
	if err != nil {
		return nil, fmt.Errorf("decode index object: %w: %w", ErrCorrupt, err)
	}
	defer dec.Close()
	lr := &io.LimitedReader{R: dec, N: int64(rawLen)}
	r := &objReader{br: bufio.NewReaderSize(lr, 64<<10)}
	packs, err := r.packs()
	if err == nil {
		err = r.finish(lr, dec)
	}
	if err != nil {
		return nil, fmt.Errorf("decode index object: %w: %w", ErrCorrupt, err)
	}
	return packs, nil
}

func openObject(data []byte) (rawLen uint32, body []byte, err error) {
	if len(data) < len(objectMagic) {
		if bytes.HasPrefix([]byte(objectMagic), data) {
			return 0, nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(data))
		}
		return 0, nil, ErrBadMagic
	}
	if string(data[:4]) != objectMagic {
		return 0, nil, ErrBadMagic
	}
	if len(data) < objectHeaderSize+objectTrailerSize {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(data))
	}
	if data[4] != ObjectVersion {
		return 0, nil, fmt.Errorf("%w: index object version %d, want %d", ErrVersion, data[4], ObjectVersion)
	}
	if data[5] != 0 || data[6] != 0 || data[7] != 0 {
		return 0, nil, fmt.Errorf("%w: reserved header bytes set", ErrCorrupt)
	}
	rawLen = binary.LittleEndian.Uint32(data[8:])
	want := objectHeaderSize + uint64(binary.LittleEndian.Uint32(data[12:])) + objectTrailerSize
	switch {
	case uint64(len(data)) < want:
		return 0, nil, fmt.Errorf("%w: %d bytes, header says %d", ErrTruncated, len(data), want)
	case uint64(len(data)) > want:
		return 0, nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, uint64(len(data))-want)
	}
	end := len(data) - objectTrailerSize
	if got, stored := crc32.Checksum(data[:end], castagnoli), binary.LittleEndian.Uint32(data[end:]); got != stored {
		return 0, nil, fmt.Errorf("%w: crc32c %08x, stored %08x", ErrChecksum, got, stored)
	}
	return rawLen, data[objectHeaderSize:end], nil
}

type objReader struct {
	br *bufio.Reader
	id [chunk.IDSize]byte
}

func (r *objReader) uvarint(what string, hi uint64) (uint64, error) {
	v, err := binary.ReadUvarint(r.br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("read %s: %w", what, err)
	}
	if v > hi {
		return 0, fmt.Errorf("%s %d exceeds %d", what, v, hi)
	}
	return v, nil
}

func (r *objReader) readID(dst *chunk.ID) error {
	if _, err := io.ReadFull(r.br, r.id[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read id: %w", err)
	}
	*dst = r.id
	return nil
}

func (r *objReader) packs() ([]PackRecord, error) {
	n, err := r.uvarint("pack count", MaxObjectPacks)
	if err != nil {
		return nil, err
	}
	packs := make([]PackRecord, 0, min(n, 256))
	total := uint64(0)
	for i := uint64(0); i < n; i++ {
		var p PackRecord
		if err := r.readID(&p.Pack); err != nil {
			return nil, fmt.Errorf("pack %d: %w", i, err)
		}
		size, err := r.uvarint("pack size", MaxPackSize-1)
		if err != nil {
			return nil, fmt.Errorf("pack %d: %w", i, err)
		}
		p.Size = int64(size)
		m, err := r.uvarint("entry count", MaxObjectEntries)
		if err != nil {
			return nil, fmt.Errorf("pack %d: %w", i, err)
		}
		if total += m; total > MaxObjectEntries {
			return nil, fmt.Errorf("pack %d: more than %d entries", i, MaxObjectEntries)
		}
		p.Entries = make([]PackEntry, 0, min(m, 4096))
		for k := uint64(0); k < m; k++ {
			var e PackEntry
			if err := r.entry(&e); err != nil {
				return nil, fmt.Errorf("pack %d entry %d: %w", i, k, err)
			}
			p.Entries = append(p.Entries, e)
		}
		if err := checkPack(&p); err != nil {
			return nil, fmt.Errorf("pack %d: %w", i, err)
		}
		packs = append(packs, p)
	}
	return packs, nil
}

func (r *objReader) entry(e *PackEntry) error {
	if err := r.readID(&e.ID); err != nil {
		return err
	}
	var err error
	if e.BlockOffset, err = r.uvarint("block offset", MaxPackSize); err != nil {
		return err
	}
	var v [3]uint64
	for i, what := range []string{"block length", "offset", "length"} {
		if v[i], err = r.uvarint(what, math.MaxUint32); err != nil {
			return err
		}
	}
	e.BlockLength, e.Offset, e.Length = uint32(v[0]), uint32(v[1]), uint32(v[2])
	return nil
}

func (r *objReader) finish(lr *io.LimitedReader, dec io.Reader) error {
	if _, err := r.br.ReadByte(); err == nil {
		return errors.New("trailing bytes in body")
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("zstd: %w", err)
	}
	if lr.N > 0 {
		return fmt.Errorf("body is %d bytes shorter than its header says", lr.N)
	}
	var one [1]byte
	switch _, err := io.ReadFull(dec, one[:]); {
	case err == nil:
		return errors.New("body longer than its header says")
	case errors.Is(err, io.EOF):
		return nil
	default:
		return fmt.Errorf("zstd: %w", err)
	}
}
