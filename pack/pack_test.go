package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// page returns a 4 KiB-ish chunk: random, or half random and half a
// repeated pattern (compressible, like guest memory).
func genChunk(rng *rand.Rand, n int, compressible bool) []byte {
	b := make([]byte, n)
	limit := n
	if compressible {
		limit = n / 2
	}
	for i := 0; i < limit; i++ {
		b[i] = byte(rng.Uint32())
	}
	for i := limit; i < n; i++ {
		b[i] = byte(i % 7)
	}
	return b
}

type testChunk struct {
	id   chunk.ID
	data []byte
}

func buildPack(t testing.TB, chunks []testChunk, opts ...Option) ([]byte, []Entry) {
	t.Helper()
	w, err := NewWriter(opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := w.Add(c.id, c.data); err != nil {
			t.Fatal(err)
		}
	}
	if w.Count() != len(chunks) {
		t.Fatalf("Count %d, want %d", w.Count(), len(chunks))
	}
	p, entries, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return p, entries
}

func makeChunks(seed uint64, n int, size func(*rand.Rand) int, compressible bool) []testChunk {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]testChunk, n)
	for i := range out {
		d := genChunk(rng, size(rng), compressible)
		out[i] = testChunk{chunk.Sum(d), d}
	}
	return out
}

func extractAll(p []byte, entries []Entry) (map[chunk.ID][]byte, error) {
	got := map[chunk.ID][]byte{}
	err := ExtractChunks(p, 0, entries, func(e Entry, data []byte) error {
		got[e.ID] = bytes.Clone(data)
		return nil
	})
	return got, err
}

func TestRoundTrip(t *testing.T) {
	fixed := func(n int) func(*rand.Rand) int { return func(*rand.Rand) int { return n } }
	tests := []struct {
		name   string
		chunks []testChunk
		opts   []Option
	}{
		{"empty", nil, nil},
		{"one byte", makeChunks(1, 1, fixed(1), false), nil},
		{"4k random", makeChunks(2, 300, fixed(4096), false), nil},
		{"4k compressible", makeChunks(3, 300, fixed(4096), true), nil},
		{"4k compressible default level", makeChunks(3, 300, fixed(4096), true), []Option{WithLevel(zstd.SpeedDefault)}},
		{"mixed sizes", makeChunks(4, 200, func(r *rand.Rand) int { return 1 + r.IntN(200<<10) }, true), nil},
		{"big chunks", makeChunks(5, 3, fixed(MaxChunkSize), true), nil},
		{"small blocks", makeChunks(6, 100, fixed(4096), true), []Option{WithBlockSize(4096)}},
		{"big blocks", makeChunks(7, 100, fixed(4096), true), []Option{WithBlockSize(1 << 20)}},
	}
	shared, err := NewEncoder(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	tests = append(tests, struct {
		name   string
		chunks []testChunk
		opts   []Option
	}{"shared encoder", makeChunks(8, 50, fixed(4096), true), []Option{WithEncoder(shared)}})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, entries := buildPack(t, tt.chunks, tt.opts...)
			if len(entries) != len(tt.chunks) {
				t.Fatalf("%d entries, want %d", len(entries), len(tt.chunks))
			}
			// Parse from a short tail first, then from what it asks for.
			tail := p[max(0, len(p)-1024):]
			parsed, err := ParseTail(tail, int64(len(p)))
			var short *ShortTailError
			if errors.As(err, &short) {
				if !errors.Is(err, ErrShortTail) || short.Need > int64(len(p)) || short.Need <= int64(len(tail)) {
					t.Fatalf("bad short tail error %v", err)
				}
				parsed, err = ParseTail(p[int64(len(p))-short.Need:], int64(len(p)))
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(parsed) != fmt.Sprint(entries) {
				t.Fatal("parsed entries differ from Finish's")
			}
			got, err := extractAll(p, parsed)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.chunks {
				if !bytes.Equal(got[c.id], c.data) {
					t.Fatalf("chunk %s differs", c.id)
				}
			}
			// Every planned run extracts on its own.
			for _, run := range PlanRuns(parsed, 0) {
				span := p[run.Offset : run.Offset+run.Length]
				n := 0
				if err := ExtractChunks(span, run.Offset, run.Entries, func(Entry, []byte) error { n++; return nil }); err != nil {
					t.Fatal(err)
				}
				if n != len(run.Entries) {
					t.Fatalf("run gave %d chunks, want %d", n, len(run.Entries))
				}
			}
			// Streamed, with gaps to skip: the same chunks, and a stream cut
			// anywhere is an error, never a short answer.
			var x Extractor
			for _, run := range PlanRuns(parsed, 1<<20) {
				span := p[run.Offset : run.Offset+run.Length]
				var streamed []Entry
				err := x.ExtractFrom(bytes.NewReader(span), run.Offset, run.Entries, func(e Entry, data []byte) error {
					if !bytes.Equal(got[e.ID], data) {
						t.Fatalf("streamed chunk %s differs", e.ID)
					}
					streamed = append(streamed, e)
					return nil
				})
				if err != nil || len(streamed) != len(run.Entries) {
					t.Fatalf("streamed run: %d of %d chunks, %v", len(streamed), len(run.Entries), err)
				}
				cut := len(span) - 1
				err = x.ExtractFrom(bytes.NewReader(span[:cut]), run.Offset, run.Entries, func(Entry, []byte) error { return nil })
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("stream cut at %d of %d: %v, want ErrUnexpectedEOF", cut, len(span), err)
				}
			}
		})
	}
}

func TestOverhead(t *testing.T) {
	for _, compressible := range []bool{false, true} {
		chunks := makeChunks(9, 4096, func(*rand.Rand) int { return 4096 }, compressible)
		p, entries := buildPack(t, chunks)
		blocks := map[uint64]bool{}
		var stored int
		for _, e := range entries {
			if !blocks[e.BlockOffset] {
				blocks[e.BlockOffset] = true
				stored += int(e.BlockLength) - 1 // payload without type byte
			}
		}
		meta := len(p) - stored
		t.Logf("compressible=%v: 4096 chunks of 4 KiB, pack %d bytes, %d blocks, table+framing %d bytes = %.1f bytes/chunk (%.2f%% of raw)",
			compressible, len(p), len(blocks), meta, float64(meta)/4096, 100*float64(meta)/float64(4096*4096))
		if compressible {
			continue
		}
		if per := float64(meta) / 4096; per > 40 {
			t.Errorf("overhead %.1f bytes per 4 KiB chunk, want <= 40", per)
		}
	}
}

func TestWriter_Errors(t *testing.T) {
	for _, opt := range []Option{WithBlockSize(10), WithBlockSize(1 << 30), WithLevel(99), WithEncoder(nil)} {
		if _, err := NewWriter(opt); err == nil {
			t.Error("bad option accepted")
		}
	}
	enc, _ := NewEncoder(zstd.SpeedFastest)
	defer enc.Close()
	if _, err := NewWriter(WithEncoder(enc), WithLevel(zstd.SpeedDefault)); err == nil {
		t.Error("WithEncoder and WithLevel accepted together")
	}
	w, _ := NewWriter()
	if err := w.Add(chunk.ID{}, nil); err == nil {
		t.Error("empty chunk accepted")
	}
	if err := w.Add(chunk.ID{}, make([]byte, MaxChunkSize+1)); err == nil {
		t.Error("oversized chunk accepted")
	}
	if _, _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(chunk.Sum([]byte("x")), []byte("x")); err == nil {
		t.Error("Add after Finish accepted")
	}
	if _, _, err := w.Finish(); err == nil {
		t.Error("second Finish accepted")
	}
}

// TestWithOutput streams packs of every shape and checks each is the
// in-memory writer's pack, byte for byte, with the same entries.
func TestWithOutput(t *testing.T) {
	page := func(*rand.Rand) int { return 4096 }
	varied := func(r *rand.Rand) int { return 1 + r.IntN(300<<10) }
	for _, tc := range []struct {
		name   string
		chunks []testChunk
	}{
		{"empty", nil},
		{"one", makeChunks(1, 1, page, true)},
		{"pages", makeChunks(2, 300, page, true)},
		{"random", makeChunks(3, 100, page, false)},
		{"varied", makeChunks(4, 40, varied, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantEntries := buildPack(t, tc.chunks)
			var out bytes.Buffer
			w, err := NewWriter(WithOutput(&out))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.chunks {
				if err := w.Add(c.id, c.data); err != nil {
					t.Fatal(err)
				}
				if w.Size() < int64(out.Len()) {
					t.Fatalf("Size %d below the %d bytes written", w.Size(), out.Len())
				}
			}
			p, entries, err := w.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if p != nil {
				t.Errorf("Finish returned %d bytes with WithOutput", len(p))
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("streamed pack (%d bytes) differs from the in-memory one (%d)", out.Len(), len(want))
			}
			if !slices.Equal(entries, wantEntries) {
				t.Error("entries differ")
			}
			if id, err := TailID(want); err != nil || id != w.ID() {
				t.Errorf("TailID %s (%v), Writer.ID %s", id, err, w.ID())
			}
		})
	}
}

// TestTailID: the id covers the table and footer, so it changes with any
// chunk id or block length, and not with the block bytes; data too short
// to hold a tail is refused.
func TestTailID(t *testing.T) {
	chunks := makeChunks(5, 20, func(*rand.Rand) int { return 4096 }, true)
	p, _ := buildPack(t, chunks)
	id, err := TailID(p)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := buildPack(t, chunks[1:])
	if oid, _ := TailID(other); oid == id {
		t.Error("packs of different chunks share an id")
	}
	flipped := bytes.Clone(p)
	flipped[HeaderSize+1] ^= 1 // a block byte: the chunk hashes catch it
	if fid, _ := TailID(flipped); fid != id {
		t.Error("a block byte changed the id")
	}
	flipped = bytes.Clone(p)
	flipped[len(p)-FooterSize-1] ^= 1 // a table byte
	if fid, _ := TailID(flipped); fid == id {
		t.Error("a table byte did not change the id")
	}
	for _, bad := range [][]byte{nil, p[:HeaderSize+FooterSize-1], append([]byte("EDPK\x01"), p[len(p)-FooterSize:]...)} {
		if _, err := TailID(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("TailID of %d bytes: %v, want ErrCorrupt", len(bad), err)
		}
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestWithOutput_WriteError(t *testing.T) {
	if _, err := NewWriter(WithOutput(nil)); err == nil {
		t.Error("nil output accepted")
	}
	chunks := makeChunks(5, 100, func(*rand.Rand) int { return 4096 }, false)
	w, err := NewWriter(WithOutput(&failingWriter{after: 1}))
	if err != nil {
		t.Fatal(err)
	}
	var addErr error
	for _, c := range chunks {
		if addErr = w.Add(c.id, c.data); addErr != nil {
			break
		}
	}
	if addErr == nil || !strings.Contains(addErr.Error(), "disk full") {
		t.Errorf("Add after a failed write: %v, want the write error", addErr)
	}
	if _, _, err := w.Finish(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Finish after a failed write: %v, want the write error", err)
	}
}

// testPack is a pack of compressible and random 4 KiB chunks with a few
// blocks of each type.
func testPack(t testing.TB) ([]byte, []Entry) {
	chunks := makeChunks(10, 40, func(*rand.Rand) int { return 4096 }, true)
	chunks = append(chunks, makeChunks(11, 40, func(*rand.Rand) int { return 4096 }, false)...)
	return buildPack(t, chunks)
}

func TestCorruption(t *testing.T) {
	p, entries := testPack(t)
	tableStart := int(entries[len(entries)-1].BlockEnd())
	zstdBlock, rawBlock := entries[0], entries[len(entries)-1]
	if p[zstdBlock.BlockOffset] != blockZstd || p[rawBlock.BlockOffset] != blockRaw {
		t.Fatal("test pack lacks a zstd or a raw block")
	}
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x40; return b }
	}
	putFooter := func(field int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte {
			fb := b[len(b)-FooterSize:]
			binary.LittleEndian.PutUint32(fb[field:], v)
			// Re-seal the checksum so the bound checks, not the CRC,
			// must catch the lie.
			binary.LittleEndian.PutUint32(fb[12:], tableChecksum(b[tableStart:len(b)-FooterSize], fb[:12]))
			return b
		}
	}
	tests := []struct {
		name      string
		mutate    func([]byte) []byte
		parseErr  error // from ParseTail(whole pack)
		chunkErr  bool  // ParseTail succeeds, extraction fails with CorruptChunkError
		corruptID chunk.ID
	}{
		{"flip in zstd block", flip(int(zstdBlock.BlockOffset) + 20), nil, true, zstdBlock.ID},
		{"flip in raw block", flip(int(rawBlock.BlockOffset + 1 + uint64(rawBlock.Offset) + 7)), nil, true, rawBlock.ID},
		{"flip block type", func(b []byte) []byte { b[rawBlock.BlockOffset] = 9; return b }, nil, true, rawBlock.ID},
		{"flip in table", flip(tableStart + 3), ErrChecksum, false, chunk.ID{}},
		{"flip in footer count", flip(len(p) - FooterSize + 8), ErrChecksum, false, chunk.ID{}},
		{"bad footer magic", flip(len(p) - 1), ErrBadMagic, false, chunk.ID{}},
		{"bad header magic", flip(0), ErrBadMagic, false, chunk.ID{}},
		{"future version", func(b []byte) []byte { b[len(b)-5] = Version + 1; return b }, ErrVersion, false, chunk.ID{}},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrBadMagic, false, chunk.ID{}},
		{"truncated to footer", func(b []byte) []byte { return b[len(b)-FooterSize:] }, ErrCorrupt, false, chunk.ID{}},
		{"tiny", func(b []byte) []byte { return b[:3] }, ErrCorrupt, false, chunk.ID{}},
		{"table longer than pack", putFooter(0, 1<<31), ErrCorrupt, false, chunk.ID{}},
		{"huge raw table", putFooter(4, 1<<31), ErrTooLarge, false, chunk.ID{}},
		{"huge count", putFooter(8, 1<<30), ErrCorrupt, false, chunk.ID{}},
		{"wrong count", putFooter(8, uint32(len(entries)-1)), ErrCorrupt, false, chunk.ID{}},
		{"wrong raw table length", putFooter(4, 100), ErrCorrupt, false, chunk.ID{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(bytes.Clone(p))
			got, err := ParseTail(b, int64(len(b)))
			if tt.parseErr != nil {
				if !errors.Is(err, tt.parseErr) {
					t.Fatalf("ParseTail: %v, want %v", err, tt.parseErr)
				}
				if got != nil {
					t.Fatal("entries returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = ExtractChunks(b, 0, got, func(e Entry, data []byte) error {
				if e.ID == tt.corruptID {
					t.Fatalf("corrupt chunk %s returned as data", e.ID)
				}
				return nil
			})
			var cce *CorruptChunkError
			if !errors.As(err, &cce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ExtractChunks: %v, want CorruptChunkError", err)
			}
			if tt.chunkErr && cce.ID != tt.corruptID && p[entries[0].BlockOffset] == blockZstd {
				// A zstd block fails as a whole: the first chunk of the
				// block is named.
				for _, e := range entries {
					if e.ID == cce.ID && e.BlockOffset != blockOf(entries, tt.corruptID) {
						t.Fatalf("error names %s outside the corrupt block", cce.ID)
					}
				}
			}
		})
	}
}

func blockOf(entries []Entry, id chunk.ID) uint64 {
	for _, e := range entries {
		if e.ID == id {
			return e.BlockOffset
		}
	}
	return 0
}

func TestExtractChunks_BadEntries(t *testing.T) {
	p, entries := testPack(t)
	e := entries[0]
	tests := []struct {
		name    string
		e       Entry
		corrupt bool
	}{
		{"outside span", func() Entry { x := e; x.BlockOffset = uint64(len(p)); return x }(), false},
		{"overflowing block", func() Entry { x := e; x.BlockOffset = ^uint64(0) - 2; return x }(), false},
		{"offset past block", func() Entry { x := e; x.Offset = 1 << 30; return x }(), true},
		{"wrong id", func() Entry { x := e; x.ID[0] ^= 1; return x }(), true},
		{"wrong length", func() Entry { x := e; x.Length--; return x }(), true},
		{"block length zero", func() Entry { x := e; x.BlockLength = 0; return x }(), true},
		{"block length short", func() Entry { x := e; x.BlockLength = 10; return x }(), true},
	}
	for _, tt := range tests {
		err := ExtractChunks(p, 0, []Entry{tt.e}, func(Entry, []byte) error {
			t.Fatalf("%s: data returned", tt.name)
			return nil
		})
		if err == nil || errors.Is(err, ErrCorrupt) != tt.corrupt {
			t.Errorf("%s: %v (want corrupt=%v)", tt.name, err, tt.corrupt)
		}
	}
	// An error from fn is returned.
	sentinel := errors.New("stop")
	if err := ExtractChunks(p, 0, entries, func(Entry, []byte) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("fn error: %v", err)
	}
}

func TestDecodeBlock_Limits(t *testing.T) {
	enc, _ := NewEncoder(zstd.SpeedFastest)
	defer enc.Close()
	big := make([]byte, 1<<20)
	zb := append([]byte{blockZstd}, enc.EncodeAll(big, nil)...)
	if _, err := DecodeBlock(nil, zb, 1<<20-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("zstd over limit: %v", err)
	}
	if out, err := DecodeBlock(nil, zb, 1<<20); err != nil || len(out) != 1<<20 {
		t.Fatalf("zstd at limit: %d bytes, %v", len(out), err)
	}
	if _, err := DecodeBlock(nil, append([]byte{blockRaw}, big...), 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("raw over limit: %v", err)
	}
	for _, bad := range [][]byte{nil, {blockZstd}, {blockZstd, 1, 2, 3}, {7, 1}} {
		if _, err := DecodeBlock(nil, bad, 1<<20); !errors.Is(err, ErrCorrupt) {
			t.Errorf("block %v: %v", bad, err)
		}
	}
	// A frame lying about its size: header says 10 bytes, content is 1 MiB.
	lie := enc.EncodeAll(big, nil)
	var h zstd.Header
	if err := h.Decode(lie); err != nil || !h.HasFCS {
		t.Fatalf("encoder wrote no content size: %v", err)
	}
}

func TestParseTail_Short(t *testing.T) {
	p, _ := testPack(t)
	var short *ShortTailError
	if _, err := ParseTail(p[len(p)-5:], int64(len(p))); !errors.As(err, &short) || short.Need != FooterSize {
		t.Fatalf("tail shorter than footer: %v", err)
	}
	if _, err := ParseTail(p[len(p)-FooterSize:], int64(len(p))); !errors.As(err, &short) {
		t.Fatalf("footer only: %v", err)
	}
	if _, err := ParseTail(p[len(p)-int(short.Need):], int64(len(p))); err != nil {
		t.Fatalf("with needed tail: %v", err)
	}
	if _, err := ParseTail(p, int64(len(p))-1); err == nil {
		t.Fatal("tail longer than pack accepted")
	}
}

func TestPlanRuns(t *testing.T) {
	e := func(off uint64, l uint32) Entry { return Entry{BlockOffset: off, BlockLength: l} }
	tests := []struct {
		name    string
		entries []Entry
		gap     uint64
		want    []Run
	}{
		{"none", nil, 0, nil},
		{"one", []Entry{e(5, 10)}, 0, []Run{{5, 10, nil}}},
		{"same block", []Entry{e(5, 10), e(5, 10)}, 0, []Run{{5, 10, nil}}},
		{"adjacent", []Entry{e(15, 10), e(5, 10)}, 0, []Run{{5, 20, nil}}},
		{"gap kept", []Entry{e(5, 10), e(30, 10)}, 4, []Run{{5, 10, nil}, {30, 10, nil}}},
		{"gap merged", []Entry{e(5, 10), e(30, 10)}, 15, []Run{{5, 35, nil}}},
	}
	for _, tt := range tests {
		got := PlanRuns(tt.entries, tt.gap)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: %d runs, want %d", tt.name, len(got), len(tt.want))
		}
		total := 0
		for i, r := range got {
			if r.Offset != tt.want[i].Offset || r.Length != tt.want[i].Length {
				t.Errorf("%s: run %d = [%d,+%d), want [%d,+%d)", tt.name, i, r.Offset, r.Length, tt.want[i].Offset, tt.want[i].Length)
			}
			for _, x := range r.Entries {
				if x.BlockOffset < r.Offset || x.BlockEnd() > r.Offset+r.Length {
					t.Errorf("%s: entry outside its run", tt.name)
				}
			}
			total += len(r.Entries)
		}
		if total != len(tt.entries) {
			t.Errorf("%s: runs hold %d entries, want %d", tt.name, total, len(tt.entries))
		}
	}
}

// fuzzPack is a small pack with a zstd and a raw block: big seeds slow every
// mutation down (the 320 KiB test pack ran at 2 execs/s).
func fuzzPack(t testing.TB) ([]byte, []Entry) {
	chunks := makeChunks(10, 3, func(*rand.Rand) int { return 512 }, true)
	chunks = append(chunks, makeChunks(11, 2, func(*rand.Rand) int { return 512 }, false)...)
	return buildPack(t, chunks)
}

func FuzzParseTail(f *testing.F) {
	p, _ := fuzzPack(f)
	empty, _ := buildPack(f, nil)
	f.Add(p, int64(0))
	f.Add(empty, int64(0))
	f.Add(p[len(p)-200:], int64(len(p)-200))
	f.Add([]byte(Magic), int64(0))
	f.Fuzz(func(t *testing.T, tail []byte, extra int64) {
		size := int64(len(tail)) + max(0, extra%(1<<40))
		_, _ = TailID(tail) // must not panic
		entries, err := ParseTail(tail, size)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.BlockOffset < HeaderSize || int64(e.BlockEnd()) > size-FooterSize || e.Length == 0 {
				t.Fatalf("entry outside the pack: %+v", e)
			}
		}
	})
}

func FuzzExtractChunks(f *testing.F) {
	p, entries := fuzzPack(f)
	f.Add(p, uint16(0), byte(0))
	f.Add(p, uint16(100), byte(1))
	f.Add(p, uint16(entries[len(entries)-1].BlockOffset), byte(0x80))
	f.Fuzz(func(t *testing.T, b []byte, at uint16, x byte) {
		if int(at) < len(b) {
			b = bytes.Clone(b)
			b[at] ^= x
		}
		// Hostile pack bytes with the genuine table and with its own.
		lists := [][]Entry{entries}
		if own, err := ParseTail(b, int64(len(b))); err == nil {
			lists = append(lists, own)
		}
		verified := func(e Entry, data []byte) error {
			if chunk.Sum(data) != e.ID || len(data) != int(e.Length) {
				t.Fatalf("unverified data for %s", e.ID)
			}
			return nil
		}
		var ex Extractor
		for _, list := range lists {
			_ = ExtractChunks(b, 0, list, verified)
			_ = ex.ExtractFrom(bytes.NewReader(b), 0, list, verified)
		}
	})
}

func BenchmarkWriter_Add(b *testing.B) {
	for _, compressible := range []bool{false, true} {
		for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
			name := fmt.Sprintf("random/%s", level)
			if compressible {
				name = fmt.Sprintf("half-compressible/%s", level)
			}
			b.Run(name, func(b *testing.B) {
				chunks := makeChunks(12, 4096, func(*rand.Rand) int { return 4096 }, compressible)
				enc, _ := NewEncoder(level)
				defer enc.Close()
				b.SetBytes(4096)
				b.ReportAllocs()
				var w *Writer
				var stored, raw int64
				i := 0
				for b.Loop() {
					if w == nil {
						w, _ = NewWriter(WithEncoder(enc))
					}
					c := chunks[i%len(chunks)]
					if err := w.Add(c.id, c.data); err != nil {
						b.Fatal(err)
					}
					raw += 4096
					i++
					if w.Count() == 4096 {
						p, _, err := w.Finish()
						if err != nil {
							b.Fatal(err)
						}
						stored += int64(len(p))
						w = nil
					}
				}
				if raw >= 4096*4096 {
					b.ReportMetric(float64(stored)/float64(raw/4096/4096*4096*4096), "ratio")
				}
			})
		}
	}
}

func BenchmarkExtractChunks(b *testing.B) {
	for _, compressible := range []bool{false, true} {
		b.Run(fmt.Sprintf("compressible=%v", compressible), func(b *testing.B) {
			chunks := makeChunks(13, 4096, func(*rand.Rand) int { return 4096 }, compressible)
			p, entries := buildPack(b, chunks)
			b.SetBytes(int64(len(chunks)) * 4096)
			b.ReportAllocs()
			for b.Loop() {
				if err := ExtractChunks(p, 0, entries, func(Entry, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
