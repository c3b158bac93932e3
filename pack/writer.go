package pack

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// DefaultBlockSize is the raw size a block is filled to before it is
// compressed: large enough that 4 KiB pages share one zstd frame and one
// table record, small enough that reading one chunk decodes little else.
const DefaultBlockSize = 64 << 10

// DefaultLevel is the zstd level of a writer's own encoder: SpeedFastest
// compresses guest memory nearly as well as SpeedDefault at about twice the
// speed (BenchmarkWriter_Add).
const DefaultLevel = zstd.SpeedFastest

// Option configures NewWriter.
type Option func(*options) error

type options struct {
	blockSize int
	level     zstd.EncoderLevel
	levelSet  bool
	enc       *zstd.Encoder
	sizeHint  int
	buf       []byte
	out       io.Writer
}

// WithBlockSize sets the raw bytes a block collects before it is compressed
// (default DefaultBlockSize, 64 KiB; 4 KiB to 16 MiB). A chunk larger than
// the block size gets a block of its own.
func WithBlockSize(n int) Option {
	return func(o *options) error {
		if n < 4<<10 || n > 16<<20 {
			return fmt.Errorf("block size %d: want 4 KiB to 16 MiB", n)
		}
		o.blockSize = n
		return nil
	}
}

// WithLevel sets the zstd level of the writer's own encoder (default
// DefaultLevel). It cannot be combined with WithEncoder.
func WithLevel(level zstd.EncoderLevel) Option {
	return func(o *options) error {
		if level < zstd.SpeedFastest || level > zstd.SpeedBestCompression {
			return fmt.Errorf("zstd level %d: unknown", level)
		}
		o.level, o.levelSet = level, true
		return nil
	}
}

// WithEncoder makes the writer use enc (see NewEncoder) instead of creating
// its own. EncodeAll is safe for concurrent use, so one encoder can serve
// every writer of a process; the writer never closes it.
func WithEncoder(enc *zstd.Encoder) Option {
	return func(o *options) error {
		if enc == nil {
			return errors.New("nil zstd encoder")
		}
		o.enc = enc
		return nil
	}
}

// WithSizeHint preallocates room for a pack of about n bytes, so building a
// pack of the expected size copies nothing (default 1 MiB; at most 1 GiB).
func WithSizeHint(n int) Option {
	return func(o *options) error {
		if n < 0 || n > 1<<30 {
			return fmt.Errorf("size hint %d: want 0 to 1 GiB", n)
		}
		o.sizeHint = n
		return nil
	}
}

// WithBuffer builds the pack in buf's storage (from its start), so a caller
// that writes pack after pack can reuse one buffer instead of having the
// runtime clear a fresh multi-MiB allocation for each.
func WithBuffer(buf []byte) Option {
	return func(o *options) error {
		o.buf = buf[:0]
		return nil
	}
}

// WithOutput makes the writer stream the pack to out: each block is written
// when it closes, so the writer holds only the open block and the table,
// not the pack. Finish then returns no bytes, only the entries; the caller
// owns out (a pusher spools packs to a file this way, so a push holds
// kilobytes per pack in flight instead of megabytes). A write error is
// returned by the next Add or by Finish.
func WithOutput(out io.Writer) Option {
	return func(o *options) error {
		if out == nil {
			return errors.New("nil pack output")
		}
		o.out = out
		return nil
	}
}

// encoderWindow is the zstd window of pack blocks. A block is a few
// chunks, DefaultBlockSize and up, so a larger window finds nothing more;
// the default (8 MiB) costs twice that in history per encoder state, and
// there is one state per CPU: 16 MiB on 2 cores, 128 MiB on 16.
const encoderWindow = 1 << 20

// NewEncoder returns a zstd encoder for packs at level: without frame CRC
// (every chunk is verified by its BLAKE3 ID instead), with a window sized
// for blocks, and with one encoder state per CPU for concurrent EncodeAll
// calls. Close it when done.
func NewEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
	)
	if err != nil {
		return nil, fmt.Errorf("new zstd encoder: %w", err)
	}
	return enc, nil
}

// Writer builds one pack, in memory or, with WithOutput, streamed to a
// writer block by block. It is not safe for concurrent use.
type Writer struct {
	enc       *zstd.Encoder
	ownEnc    bool
	blockSize int

	// buf holds the header, the finished blocks and, from blockStart on,
	// the open block: its type byte, then its chunks raw. A block that
	// stays raw is never copied again; one that compresses is replaced in
	// place by its smaller zstd frame.
	buf        []byte
	blockStart int     // offset in buf of the open block's type byte; -1 when none is open
	open       int     // index in entries of the open block's first chunk
	entries    []Entry // BlockOffset/BlockLength set when a block closes
	blocks     []int   // per closed block: number of chunks
	scratch    []byte
	done       bool

	// With WithOutput, buf holds only what was not yet written to out:
	// the header before the first block closes, then the open block.
	out     io.Writer
	flushed int64 // bytes written to out; offsets in buf start here
	err     error // first write error

	id chunk.ID // set by Finish
}

// NewWriter returns a writer for a new pack.
func NewWriter(opts ...Option) (*Writer, error) {
	o := options{blockSize: DefaultBlockSize, level: DefaultLevel, sizeHint: 1 << 20}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("new pack writer: %w", err)
		}
	}
	if o.enc != nil && o.levelSet {
		return nil, errors.New("new pack writer: WithLevel and WithEncoder both given")
	}
	w := &Writer{enc: o.enc, blockSize: o.blockSize, blockStart: -1}
	if w.enc == nil {
		enc, err := NewEncoder(o.level)
		if err != nil {
			return nil, fmt.Errorf("new pack writer: %w", err)
		}
		w.enc, w.ownEnc = enc, true
	}
	w.buf, w.out = o.buf, o.out
	if w.buf == nil {
		hint := o.sizeHint
		if w.out != nil {
			hint = w.blockSize + w.blockSize/8 + HeaderSize
		}
		w.buf = make([]byte, 0, max(hint, HeaderSize))
	}
	w.buf = append(w.buf, Magic...)
	w.buf = append(w.buf, Version)
	return w, nil
}

// Add appends a chunk; data is copied. The caller vouches that id is
// chunk.Sum(data): readers verify it on every extraction, so a wrong ID
// makes the chunk unreadable, never silently wrong. Add does not dedup.
func (w *Writer) Add(id chunk.ID, data []byte) error {
	if w.done {
		return fmt.Errorf("add chunk %s: pack already finished", id)
	}
	if w.err != nil {
		return fmt.Errorf("add chunk %s: %w", id, w.err)
	}
	if len(data) == 0 || len(data) > MaxChunkSize {
		return fmt.Errorf("add chunk %s: length %d not in 1..%d", id, len(data), MaxChunkSize)
	}
	if w.pendingLen()+len(data) > MaxBlockRawSize {
		w.closeBlock()
	}
	if w.blockStart < 0 {
		w.blockStart = len(w.buf)
		w.buf = append(w.buf, blockRaw)
	}
	w.entries = append(w.entries, Entry{ID: id, Offset: uint32(w.pendingLen()), Length: uint32(len(data))})
	w.buf = append(w.buf, data...)
	if w.pendingLen() >= w.blockSize {
		w.closeBlock()
	}
	return nil
}

// pendingLen returns the raw bytes of the open block.
func (w *Writer) pendingLen() int {
	if w.blockStart < 0 {
		return 0
	}
	return len(w.buf) - w.blockStart - 1
}

// Size returns the pack bytes so far, the open block counted raw; the
// finished pack adds its table and footer (about 40 bytes per chunk).
func (w *Writer) Size() int64 { return w.flushed + int64(len(w.buf)) }

// Count returns the number of chunks added.
func (w *Writer) Count() int { return len(w.entries) }

// closeBlock compresses the open block and keeps the result only when it
// saves at least 1/32: random pages are stored raw, and reading them then
// costs a copy, not a failed decompression attempt.
func (w *Writer) closeBlock() {
	if w.pendingLen() == 0 {
		return
	}
	raw := w.buf[w.blockStart+1:]
	w.scratch = w.enc.EncodeAll(raw, w.scratch[:0])
	if len(w.scratch) <= len(raw)-len(raw)/32 {
		w.buf[w.blockStart] = blockZstd
		w.buf = append(w.buf[:w.blockStart+1], w.scratch...)
	}
	off := uint64(w.flushed) + uint64(w.blockStart)
	stored := uint32(len(w.buf) - w.blockStart)
	for i := w.open; i < len(w.entries); i++ {
		w.entries[i].BlockOffset, w.entries[i].BlockLength = off, stored
	}
	w.blocks = append(w.blocks, len(w.entries)-w.open)
	w.open = len(w.entries)
	w.blockStart = -1
	w.flush()
}

// flush writes buf to out in streaming mode.
func (w *Writer) flush() {
	if w.out == nil || w.err != nil || len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil {
		w.err = fmt.Errorf("write pack: %w", err)
		return
	}
	w.flushed += int64(len(w.buf))
	w.buf = w.buf[:0]
}

// Finish closes the last block, appends table and footer, and returns the
// pack (nil with WithOutput: it went to the output) and its entries (in
// pack order). Before returning it parses its own
// tail and compares the result, so a pack that could not be read back is
// never uploaded. The writer cannot be used afterwards.
func (w *Writer) Finish() ([]byte, []Entry, error) {
	if w.done {
		return nil, nil, errors.New("finish pack: already finished")
	}
	w.done = true
	if w.ownEnc {
		defer func() { _ = w.enc.Close() }()
	}
	w.closeBlock()

	raw := make([]byte, 0, len(w.entries)*(chunk.IDSize+3)+len(w.blocks)*6+8)
	raw = appendUvarint(raw, uint64(len(w.blocks)))
	i := 0
	for _, n := range w.blocks {
		raw = appendUvarint(raw, uint64(w.entries[i].BlockLength))
		raw = appendUvarint(raw, uint64(n))
		for _, e := range w.entries[i : i+n] {
			raw = append(raw, e.ID[:]...)
			raw = appendUvarint(raw, uint64(e.Length))
		}
		i += n
	}
	if len(raw) > MaxTableRawSize {
		return nil, nil, fmt.Errorf("finish pack: %w: table of %d bytes for %d chunks, limit %d", ErrTooLarge, len(raw), len(w.entries), MaxTableRawSize)
	}
	if w.err != nil {
		return nil, nil, fmt.Errorf("finish pack: %w", w.err)
	}
	tableStart := len(w.buf)
	w.buf = w.enc.EncodeAll(raw, w.buf)
	f := footer{
		tableLen: uint32(len(w.buf) - tableStart),
		tableRaw: uint32(len(raw)),
		count:    uint32(len(w.entries)),
		version:  Version,
	}
	head := f.append(nil)[:12]
	f.checksum = tableChecksum(w.buf[tableStart:], head)
	w.buf = f.append(w.buf)
	w.id = chunk.Sum(w.buf[tableStart:])

	parsed, err := ParseTail(w.buf, w.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("finish pack: verify own table: %w", err)
	}
	if !slices.Equal(parsed, w.entries) {
		return nil, nil, errors.New("finish pack: verify own table: entries differ from what was written")
	}
	w.flush()
	if w.err != nil {
		return nil, nil, fmt.Errorf("finish pack: %w", w.err)
	}
	pack, entries := w.buf, w.entries
	if w.out != nil {
		pack = nil
	}
	w.buf, w.entries, w.scratch = nil, nil, nil
	return pack, entries, nil
}

// ID returns the pack's id, once Finish has succeeded: the BLAKE3 of its
// tail (see TailID).
func (w *Writer) ID() chunk.ID { return w.id }

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
