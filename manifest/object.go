package manifest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// Kind is the kind of a recipe object.
type Kind uint8

// Recipe object kinds.
const (
	// KindFull holds the whole extent list.
	KindFull Kind = 1
	// KindPatch holds ops against the extent list of its base object.
	KindPatch Kind = 2
)

// OpCode is the operation of one patch Op.
type OpCode uint8

// Patch operations, applied in order against the base's extent sequence.
const (
	// OpCopy copies the next N base extents to the result.
	OpCopy OpCode = 0
	// OpSkip drops the next N base extents.
	OpSkip OpCode = 1
	// OpInsert appends its Extents to the result.
	OpInsert OpCode = 2
)

const (
	// RecipeVersion is the recipe object format version this code writes
	// and the only one it reads.
	RecipeVersion = 1

	// MaxChainDepth bounds a patch chain: a patch's depth is its base's
	// depth plus one, a full object has depth 0. Reading a recipe reads at
	// most MaxChainDepth+1 objects.
	MaxChainDepth = 16

	recipeMagic       = "EDRC"
	recipeHeaderSize  = 16 // magic, version, kind, reserved(2), raw length(4), body length(4)
	recipeTrailerSize = 4  // CRC-32C of everything before it
	maxRawBody        = 1<<32 - 1

	// zstd window of the body. Recipes repeat mostly nearby (runs of the
	// same page); a small window caps the decoder's memory on hostile input.
	zstdWindow = 4 << 20
)

var (
	// ErrRecipeMagic is returned by Decode for data that is not a recipe object.
	ErrRecipeMagic = errors.New("not a recipe object")
	// ErrRecipeVersion is returned by Decode for an unsupported format version.
	ErrRecipeVersion = errors.New("unsupported recipe object version")
	// ErrRecipeTruncated is returned by Decode when the data is shorter than
	// its header says: a partial download or write.
	ErrRecipeTruncated = errors.New("truncated recipe object")
	// ErrRecipeChecksum is returned when the object's CRC-32C does not match,
	// or when Resolve loads an object whose BLAKE3 is not its id.
	ErrRecipeChecksum = errors.New("recipe object checksum mismatch")
	// ErrRecipeCorrupt is returned for an object whose envelope checks out
	// but whose body is malformed or out of bounds.
	ErrRecipeCorrupt = errors.New("corrupt recipe object")
	// ErrPatchMismatch is returned by Apply when a patch does not fit its
	// base (ops run past it or leave part of it unconsumed).
	ErrPatchMismatch = errors.New("patch does not match base recipe")
	// ErrChainTooDeep is returned for a patch deeper than MaxChainDepth.
	ErrChainTooDeep = errors.New("recipe chain too deep")

	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	// sharedEncoder is created on first use and only ever used through
	// EncodeAll, which is safe for concurrent use: an encoder costs
	// megabytes to set up, more than encoding a typical recipe.
	sharedEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithWindowSize(zstdWindow))
	})
)

// Op is one patch operation. N counts base extents for OpCopy and OpSkip
// and equals len(Extents) for OpInsert.
type Op struct {
	Code    OpCode
	N       int
	Extents []Extent
}

// Object is a decoded recipe object.
type Object struct {
	Kind Kind
	// Base is the id of the object a patch applies to; zero for a full object.
	Base chunk.ID
	// Depth is 0 for a full object and the chain length for a patch.
	Depth int
	// Size is the size of the file the object describes.
	Size int64
	// Recipe is set for a full object.
	Recipe *Recipe
	// Ops is set for a patch.
	Ops []Op
}

// EncodeFull encodes r as a full recipe object. Its id is chunk.Sum of the result.
//
// Layout: "EDRC", version u8, kind u8, reserved u16 (0), raw body length
// u32 LE, compressed body length u32 LE, zstd body, CRC-32C (LE) of all
// preceding bytes. Full body: uvarint size, uvarint count, then per extent
// uvarint(length<<1 | zero) followed, for data extents, by the 32-byte id.
func EncodeFull(r *Recipe) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("encode recipe: %w", err)
	}
	// Room for the worst case up front: the ids of a memory file's recipe
	// do not compress, and growing a 35 MB body by appending held both
	// copies at once.
	out := bytes.NewBuffer(make([]byte, recipeHeaderSize, recipeHeaderSize+fullSizeHint(r)+recipeTrailerSize))
	rawLen, err := writeFullBody(out, r)
	if err != nil {
		return nil, err
	}
	data := out.Bytes()
	if err := putHeader(data, KindFull, rawLen, len(data)-recipeHeaderSize); err != nil {
		return nil, err
	}
	return binary.LittleEndian.AppendUint32(data, crc32.Checksum(data, castagnoli)), nil
}

// WriteFull writes to f, which must be empty, the bytes EncodeFull returns
// for r, and returns their id and length. The body is streamed: a 12 GiB
// memory file's recipe (3 million extents, over 100 MB encoded, ids do not
// compress) is never held in memory, where EncodeFull holds it twice at
// its peak (raw and compressed). The header and checksum are finished by
// seeking back and reading f once more.
func WriteFull(f io.ReadWriteSeeker, r *Recipe) (id chunk.ID, size int64, err error) {
	if err := r.Validate(); err != nil {
		return chunk.ID{}, 0, fmt.Errorf("encode recipe: %w", err)
	}
	var header [recipeHeaderSize]byte
	if _, err := f.Write(header[:]); err != nil {
		return chunk.ID{}, 0, fmt.Errorf("write recipe: %w", err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	cw := &countingWriter{w: bw}
	rawLen, err := writeFullBody(cw, r)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = putHeader(header[:], KindFull, rawLen, int(cw.n))
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err == nil {
		_, err = f.Write(header[:])
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return chunk.ID{}, 0, fmt.Errorf("write recipe: %w", err)
	}
	crc := crc32.New(castagnoli)
	h := chunk.NewHasher()
	n, err := io.Copy(io.MultiWriter(crc, h), f)
	if err != nil {
		return chunk.ID{}, 0, fmt.Errorf("write recipe: read back: %w", err)
	}
	if n != recipeHeaderSize+cw.n {
		return chunk.ID{}, 0, fmt.Errorf("write recipe: read back %d bytes, wrote %d", n, recipeHeaderSize+cw.n)
	}
	trailer := binary.LittleEndian.AppendUint32(nil, crc.Sum32())
	if _, err := f.Write(trailer); err != nil {
		return chunk.ID{}, 0, fmt.Errorf("write recipe: %w", err)
	}
	_, _ = h.Write(trailer)
	return h.Sum(), n + recipeTrailerSize, nil
}

// fullEncoders are the streaming zstd encoders of full bodies, kept
// between calls: one costs megabytes to set up, more than encoding a
// typical recipe. An encoder holds no state between Reset and Close.
var fullEncoders = sync.Pool{New: func() any {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(zstdWindow))
	if err != nil {
		return err
	}
	return enc
}}

// writeFullBody streams r's full body, compressed, to w and returns its
// raw length.
func writeFullBody(w io.Writer, r *Recipe) (rawLen uint64, err error) {
	got := fullEncoders.Get()
	enc, ok := got.(*zstd.Encoder)
	if !ok {
		return 0, fmt.Errorf("encode recipe: new zstd encoder: %v", got)
	}
	enc.Reset(w)
	defer func() {
		enc.Reset(nil) // the pool must not keep w (a 100 MB buffer) alive
		fullEncoders.Put(enc)
	}()
	const flushAt = 60 << 10
	buf := make([]byte, 0, flushAt+binary.MaxVarintLen64+chunk.IDSize)
	buf = binary.AppendUvarint(buf, uint64(r.Size))
	buf = binary.AppendUvarint(buf, uint64(len(r.Extents)))
	flush := func() error {
		rawLen += uint64(len(buf))
		if rawLen > maxRawBody {
			return fmt.Errorf("encode recipe: %w: body of over %d bytes", ErrInvalidRecipe, rawLen)
		}
		if _, err := enc.Write(buf); err != nil {
			return fmt.Errorf("encode recipe: %w", err)
		}
		buf = buf[:0]
		return nil
	}
	for i := range r.Extents {
		if buf = appendExtent(buf, &r.Extents[i]); len(buf) >= flushAt {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if err := enc.Close(); err != nil {
		return 0, fmt.Errorf("encode recipe: %w", err)
	}
	return rawLen, nil
}

// fullSizeHint bounds the encoded size of r's full object from above,
// for ids that do not compress.
func fullSizeHint(r *Recipe) int {
	return 2*binary.MaxVarintLen64 + len(r.Extents)*(chunk.IDSize+3) + len(r.Extents)/64 + 1024
}

// putHeader fills the header of an object of kind with the given lengths.
func putHeader(h []byte, kind Kind, rawLen uint64, bodyLen int) error {
	if bodyLen > maxRawBody {
		return fmt.Errorf("encode recipe: %w: compressed body of %d bytes", ErrInvalidRecipe, bodyLen)
	}
	copy(h, recipeMagic)
	h[4] = RecipeVersion
	h[5] = byte(kind)
	h[6], h[7] = 0, 0
	binary.LittleEndian.PutUint32(h[8:], uint32(rawLen))
	binary.LittleEndian.PutUint32(h[12:], uint32(bodyLen))
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// EncodePatch encodes ops against the object baseID as a patch object of
// the given depth (the base's depth plus one) describing a file of size
// bytes. Patch body: 32-byte base id, uvarint depth, uvarint size, uvarint
// op count, then per op uvarint(N<<2 | code), an OpInsert followed by its N
// extents encoded as in a full body.
func EncodePatch(baseID chunk.ID, depth int, size int64, ops []Op) ([]byte, error) {
	switch {
	case baseID.IsZero():
		return nil, fmt.Errorf("encode patch: %w: zero base id", ErrInvalidRecipe)
	case depth < 1 || depth > MaxChainDepth:
		return nil, fmt.Errorf("encode patch: %w: depth %d, want 1..%d", ErrChainTooDeep, depth, MaxChainDepth)
	case size < 0 || size >= MaxSize:
		return nil, fmt.Errorf("encode patch: %w: size %d out of range", ErrInvalidRecipe, size)
	}
	rawLen := chunk.IDSize + 4*binary.MaxVarintLen64
	for i, op := range ops {
		if err := checkOp(&op); err != nil {
			return nil, fmt.Errorf("encode patch: %w: op %d: %w", ErrInvalidRecipe, i, err)
		}
		rawLen += binary.MaxVarintLen64 + len(op.Extents)*(chunk.IDSize+binary.MaxVarintLen64)
	}
	raw := make([]byte, 0, rawLen)
	raw = append(raw, baseID[:]...)
	raw = binary.AppendUvarint(raw, uint64(depth))
	raw = binary.AppendUvarint(raw, uint64(size))
	raw = binary.AppendUvarint(raw, uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		raw = binary.AppendUvarint(raw, uint64(op.N)<<2|uint64(op.Code))
		for k := range op.Extents {
			raw = appendExtent(raw, &op.Extents[k])
		}
	}
	return seal(KindPatch, raw)
}

func checkOp(op *Op) error {
	if op.N <= 0 || op.N > MaxExtents {
		return fmt.Errorf("count %d out of range 1..%d", op.N, MaxExtents)
	}
	switch op.Code {
	case OpCopy, OpSkip:
		if len(op.Extents) != 0 {
			return fmt.Errorf("op code %d carries extents", op.Code)
		}
	case OpInsert:
		if len(op.Extents) != op.N {
			return fmt.Errorf("insert of %d extents has count %d", len(op.Extents), op.N)
		}
		for k := range op.Extents {
			if err := checkExtent(&op.Extents[k]); err != nil {
				return fmt.Errorf("extent %d: %w", k, err)
			}
		}
	default:
		return fmt.Errorf("unknown op code %d", op.Code)
	}
	return nil
}

func appendExtent(raw []byte, e *Extent) []byte {
	v := e.Length << 1
	if e.Zero {
		return binary.AppendUvarint(raw, v|1)
	}
	raw = binary.AppendUvarint(raw, v)
	return append(raw, e.ID[:]...)
}

// seal compresses raw and wraps it in the header and trailer.
func seal(kind Kind, raw []byte) ([]byte, error) {
	if len(raw) > maxRawBody {
		return nil, fmt.Errorf("encode recipe: %w: body of %d bytes", ErrInvalidRecipe, len(raw))
	}
	enc, err := sharedEncoder()
	if err != nil {
		return nil, fmt.Errorf("encode recipe: new zstd encoder: %w", err)
	}
	// Room for the worst case up front: the ids of a memory file's recipe
	// do not compress, and growing a 35 MB body by appending held both
	// copies at once.
	out := make([]byte, recipeHeaderSize, recipeHeaderSize+enc.MaxEncodedSize(len(raw))+recipeTrailerSize)
	out = enc.EncodeAll(raw, out)
	if err := putHeader(out, kind, uint64(len(raw)), len(out)-recipeHeaderSize); err != nil {
		return nil, err
	}
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// Decode parses a recipe object. It checks the envelope (magic, version,
// length, CRC-32C) before decompressing, then parses the body as a stream:
// memory grows with the extents actually present and the object's size,
// never with a count the input claims alone. A full object's recipe is
// validated; a patch's ops are checked one by one (Apply checks them
// against the base).
func Decode(data []byte) (*Object, error) {
	kind, rawLen, body, err := openEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("decode recipe: %w", err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(body),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdWindow))
	if err != nil {
		return nil, fmt.Errorf("decode recipe: %w: %w", ErrRecipeCorrupt, err)
	}
	defer dec.Close()
	lr := &io.LimitedReader{R: dec, N: int64(rawLen)}
	r := &bodyReader{br: bufio.NewReaderSize(lr, 64<<10), bodyLen: len(body)}
	var obj *Object
	if kind == KindFull {
		obj, err = r.full()
	} else {
		obj, err = r.patch()
	}
	if err == nil {
		err = r.finish(lr, dec)
	}
	if err != nil {
		return nil, fmt.Errorf("decode recipe: %w: %w", ErrRecipeCorrupt, err)
	}
	return obj, nil
}

func openEnvelope(data []byte) (kind Kind, rawLen uint32, body []byte, err error) {
	if len(data) < len(recipeMagic) {
		if bytes.HasPrefix([]byte(recipeMagic), data) {
			return 0, 0, nil, fmt.Errorf("%w: %d bytes", ErrRecipeTruncated, len(data))
		}
		return 0, 0, nil, ErrRecipeMagic
	}
	if string(data[:4]) != recipeMagic {
		return 0, 0, nil, ErrRecipeMagic
	}
	if len(data) < recipeHeaderSize+recipeTrailerSize {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", ErrRecipeTruncated, len(data))
	}
	if data[4] != RecipeVersion {
		return 0, 0, nil, fmt.Errorf("%w: %d, want %d", ErrRecipeVersion, data[4], RecipeVersion)
	}
	kind = Kind(data[5])
	if kind != KindFull && kind != KindPatch {
		return 0, 0, nil, fmt.Errorf("%w: unknown kind %d", ErrRecipeCorrupt, kind)
	}
	if data[6] != 0 || data[7] != 0 {
		return 0, 0, nil, fmt.Errorf("%w: reserved header bytes set", ErrRecipeCorrupt)
	}
	rawLen = binary.LittleEndian.Uint32(data[8:])
	bodyLen := uint64(binary.LittleEndian.Uint32(data[12:]))
	want := recipeHeaderSize + bodyLen + recipeTrailerSize
	switch {
	case uint64(len(data)) < want:
		return 0, 0, nil, fmt.Errorf("%w: %d bytes, header says %d", ErrRecipeTruncated, len(data), want)
	case uint64(len(data)) > want:
		return 0, 0, nil, fmt.Errorf("%w: %d trailing bytes", ErrRecipeCorrupt, uint64(len(data))-want)
	}
	end := len(data) - recipeTrailerSize
	if got, stored := crc32.Checksum(data[:end], castagnoli), binary.LittleEndian.Uint32(data[end:]); got != stored {
		return 0, 0, nil, fmt.Errorf("%w: crc32c %08x, stored %08x", ErrRecipeChecksum, got, stored)
	}
	return kind, rawLen, data[recipeHeaderSize:end], nil
}

// bodyReader parses a decompressed body. Errors it returns are wrapped in
// ErrRecipeCorrupt by Decode.
type bodyReader struct {
	br      *bufio.Reader
	bodyLen int                // compressed body size, for extentsCap
	id      [chunk.IDSize]byte // scratch, so reading an id does not allocate
}

func (r *bodyReader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(r.br)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", what, noEOF(err))
	}
	return v, nil
}

// bounded reads a uvarint that must be at most hi.
func (r *bodyReader) bounded(what string, hi uint64) (uint64, error) {
	v, err := r.uvarint(what)
	if err != nil {
		return 0, err
	}
	if v > hi {
		return 0, fmt.Errorf("%s %d out of range [0, %d]", what, v, hi)
	}
	return v, nil
}

func (r *bodyReader) readID(dst *chunk.ID) error {
	if _, err := io.ReadFull(r.br, r.id[:]); err != nil {
		return fmt.Errorf("read id: %w", noEOF(err))
	}
	*dst = r.id
	return nil
}

func (r *bodyReader) extent(e *Extent) error {
	v, err := r.uvarint("extent")
	if err != nil {
		return err
	}
	*e = Extent{Length: v >> 1, Zero: v&1 == 1}
	if !e.Zero {
		if err := r.readID(&e.ID); err != nil {
			return err
		}
	}
	return checkExtent(e)
}

// initialCap caps slice preallocation from an untrusted count.
func initialCap(n uint64) int {
	return int(min(n, 4096))
}

// extentsCap is the capacity a full recipe's extents start with. Growing a
// slice of a million extents by appending cost a pull of a 4 GiB memory
// file over a second; the count the body declares gives the size at once.
// It is trusted only as far as the object's own bytes vouch for it: at
// least every other extent carries a 32-byte id, and ids are hashes, which
// do not compress. A hostile count therefore costs at most a few times the
// object's size, memory already spent on reading it.
func extentsCap(count uint64, bodyLen int) int {
	return int(min(count, 2*uint64(bodyLen)/chunk.IDSize+1, MaxExtents))
}

func (r *bodyReader) full() (*Object, error) {
	size, err := r.bounded("size", MaxSize-1)
	if err != nil {
		return nil, err
	}
	count, err := r.bounded("extent count", MaxExtents)
	if err != nil {
		return nil, err
	}
	rec := &Recipe{Size: int64(size), Extents: make([]Extent, 0, extentsCap(count, r.bodyLen))}
	var sum uint64
	for i := uint64(0); i < count; i++ {
		var e Extent
		if err := r.extent(&e); err != nil {
			return nil, fmt.Errorf("extent %d: %w", i, err)
		}
		// Check the running sum here so a huge count of extents cannot be
		// read past the declared size before Validate sees them.
		if e.Length > size-sum {
			return nil, fmt.Errorf("extent %d ends past size %d", i, size)
		}
		if e.Zero && i > 0 && rec.Extents[i-1].Zero {
			return nil, fmt.Errorf("extent %d: adjacent zero extents", i)
		}
		sum += e.Length
		rec.Extents = append(rec.Extents, e)
	}
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	return &Object{Kind: KindFull, Size: rec.Size, Recipe: rec}, nil
}

func (r *bodyReader) patch() (*Object, error) {
	obj := &Object{Kind: KindPatch}
	if err := r.readID(&obj.Base); err != nil {
		return nil, err
	}
	if obj.Base.IsZero() {
		return nil, errors.New("zero base id")
	}
	depth, err := r.uvarint("depth")
	if err != nil {
		return nil, err
	}
	if depth < 1 || depth > MaxChainDepth {
		return nil, fmt.Errorf("%w: depth %d, want 1..%d", ErrChainTooDeep, depth, MaxChainDepth)
	}
	obj.Depth = int(depth)
	size, err := r.bounded("size", MaxSize-1)
	if err != nil {
		return nil, err
	}
	obj.Size = int64(size)
	nops, err := r.bounded("op count", 3*MaxExtents)
	if err != nil {
		return nil, err
	}
	obj.Ops = make([]Op, 0, initialCap(nops))
	// A valid patch never consumes more than MaxExtents base extents nor
	// inserts more than MaxExtents; checking the totals as we go bounds
	// memory by MaxExtents whatever counts the input claims.
	var consumed, inserted uint64
	for i := uint64(0); i < nops; i++ {
		v, err := r.uvarint("op")
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		op := Op{Code: OpCode(v & 3), N: 0}
		n := v >> 2
		if n == 0 || n > MaxExtents {
			return nil, fmt.Errorf("op %d: count %d out of range", i, n)
		}
		op.N = int(n)
		switch op.Code {
		case OpCopy, OpSkip:
			consumed += n
			if consumed > MaxExtents {
				return nil, fmt.Errorf("op %d: ops consume more than %d base extents", i, MaxExtents)
			}
		case OpInsert:
			inserted += n
			if inserted > MaxExtents {
				return nil, fmt.Errorf("op %d: ops insert more than %d extents", i, MaxExtents)
			}
			op.Extents = make([]Extent, 0, initialCap(n))
			for k := uint64(0); k < n; k++ {
				var e Extent
				if err := r.extent(&e); err != nil {
					return nil, fmt.Errorf("op %d extent %d: %w", i, k, err)
				}
				if e.Zero && k > 0 && op.Extents[k-1].Zero {
					return nil, fmt.Errorf("op %d extent %d: adjacent zero extents", i, k)
				}
				op.Extents = append(op.Extents, e)
			}
		default:
			return nil, fmt.Errorf("op %d: unknown op code %d", i, op.Code)
		}
		obj.Ops = append(obj.Ops, op)
	}
	return obj, nil
}

// finish checks that the body was consumed exactly: no bytes left in the
// declared raw length and nothing after it in the zstd stream. Reading the
// stream to its end also verifies zstd's own content checksum.
func (r *bodyReader) finish(lr *io.LimitedReader, dec io.Reader) error {
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

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
