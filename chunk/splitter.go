package chunk

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"slices"
	"sort"

	"github.com/restic/chunker"
)

const (
	// DefaultReadSize is the splitter's read window: large reads keep the
	// syscall count low (a 4 KiB read per page costs more than hashing it).
	DefaultReadSize = 4 << 20
	// parallelMin is the batch size below which hashing stays on the
	// calling goroutine: starting workers costs more than it saves.
	parallelMin = 256 << 10
)

// Chunk is one piece of a file. Chunks returned by a Splitter cover the file
// exactly, in order and without gaps.
type Chunk struct {
	Offset int64
	Length int
	// Zero marks an all-zero run (holes included). Zero chunks are never
	// hashed: ID is the zero ID and Data is nil. One zero chunk may span many
	// pages (up to 1 GiB), which keeps recipes of sparse files small.
	Zero bool
	// ID is Sum(Data) for non-zero chunks.
	ID ID
	// Data holds the chunk's bytes, valid only until the next call to Next
	// or NextBatch: the splitter reuses its buffers.
	Data []byte
}

// SplitterOption configures NewSplitter.
type SplitterOption func(*splitterOptions) error

type splitterOptions struct {
	workers  int
	readSize int
}

// WithWorkers sets how many goroutines hash a batch of chunks. The default
// is runtime.GOMAXPROCS(0); 1 hashes on the calling goroutine.
func WithWorkers(n int) SplitterOption {
	return func(o *splitterOptions) error {
		if n < 1 {
			return fmt.Errorf("workers %d: want at least 1", n)
		}
		o.workers = n
		return nil
	}
}

// WithReadSize sets the size of each read and of a batch (default
// DefaultReadSize, 4 MiB). It is rounded up to a multiple of the fixed
// chunk size. Memory use is about twice this plus the CDC Max.
func WithReadSize(n int) SplitterOption {
	return func(o *splitterOptions) error {
		if n < PageSize || n > 1<<30 {
			return fmt.Errorf("read size %d: want %d to 1 GiB", n, PageSize)
		}
		o.readSize = n
		return nil
	}
}

// Splitter cuts a file into chunks with bounded memory. It reads the file in
// large windows, detects zero pages and holes, and hashes the non-zero
// chunks of each window in parallel. A Splitter is not safe for concurrent
// use.
type Splitter struct {
	r       io.ReaderAt
	size    int64
	regions []Region
	p       Params
	unit    int64 // zero-detection unit: Size for Fixed, PageSize for CDC
	workers int

	buf    []byte // read buffer, the window when it is not mapped
	win    []byte // window: file bytes [winOff, winOff+winLen)
	winOff int64
	winLen int
	// winHoles: win is a mapping with holes, whose pages must not be read
	winHoles bool
	zeros    []bool // Fixed: whether each unit of the window is all zero

	pos   int64 // next file offset not yet in a batch (outside CDC segments)
	batch []Chunk
	next  int // index of the next chunk of batch to return
	err   error

	// CDC state: seg serves one run of non-zero pages to cdc; cut chunks
	// are copied into arena so the window can move on.
	cdc      *chunker.Chunker
	seg      segmentReader
	inSeg    bool
	segStart int64
	arena    []byte

	mapper *mapper // maps windows of an *os.File (Linux); nil: read them
}

// NewSplitter returns a splitter over the first size bytes of r. regions
// lists the byte ranges that hold data (DataRegions); bytes outside them are
// holes, emitted as zero chunks without being read. nil regions means the
// whole file is data; an empty non-nil slice means it is all hole. The
// splitter may keep regions and reads them until it is done: do not change
// them meanwhile.
func NewSplitter(r io.ReaderAt, size int64, regions []Region, p Params, opts ...SplitterOption) (*Splitter, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("new splitter: %w", err)
	}
	if size < 0 {
		return nil, fmt.Errorf("new splitter: negative size %d", size)
	}
	o := splitterOptions{workers: runtime.GOMAXPROCS(0), readSize: DefaultReadSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("new splitter: %w", err)
		}
	}
	norm, err := normalizeRegions(regions, size)
	if err != nil {
		return nil, fmt.Errorf("new splitter: %w", err)
	}
	s := &Splitter{r: r, size: size, regions: norm, p: p, workers: o.workers, mapper: newMapper(r)}
	if p.Method == Fixed {
		s.unit = int64(p.Size)
	} else {
		s.unit = PageSize
	}
	readSize := (int64(o.readSize) + s.unit - 1) / s.unit * s.unit
	s.buf = make([]byte, min(readSize, max(size, s.unit)))
	if p.Method == CDC {
		s.cdc = chunker.NewWithBoundaries(nil, p.Pol, uint(p.Min), uint(p.Max))
		s.arena = make([]byte, len(s.buf)+p.Max)
		s.seg.s = s
	}
	return s, nil
}

// Next returns the next chunk, or io.EOF after the last one.
func (s *Splitter) Next() (Chunk, error) {
	if s.next >= len(s.batch) {
		if err := s.fill(); err != nil {
			return Chunk{}, err
		}
	}
	c := s.batch[s.next]
	s.next++
	return c, nil
}

// NextBatch returns the chunks of the next window (about one read size of
// bytes, already hashed in parallel), or io.EOF after the last one. The
// slice and the chunks' Data are valid until the next call to Next or
// NextBatch. Mixing Next and NextBatch is allowed.
func (s *Splitter) NextBatch() ([]Chunk, error) {
	if s.next >= len(s.batch) {
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
	rest := s.batch[s.next:]
	s.next = len(s.batch)
	return rest, nil
}

func (s *Splitter) fill() error {
	if s.err != nil {
		return s.err
	}
	s.batch = s.batch[:0]
	s.next = 0
	err := Guard(func() error {
		if s.p.Method == Fixed {
			return s.fillFixed()
		}
		return s.fillCDC()
	})
	if err == nil && len(s.batch) == 0 {
		err = io.EOF
	}
	if err == nil {
		err = s.hashBatch()
	}
	if err != nil {
		s.batch = s.batch[:0]
		s.err = err
		_ = s.Close()
		return err
	}
	return nil
}

// fillFixed cuts chunks of Size at multiples of Size. A batch holds only
// chunks of the current window, so their Data stays valid; a zero run that
// reaches a window change is left pending and continued by the next batch.
func (s *Splitter) fillFixed() error {
	hasData := false
	zeroStart := int64(-1)
	for s.pos < s.size {
		off := s.pos
		if he := s.holeEnd(off); he > off {
			if zeroStart < 0 {
				zeroStart = off
			}
			s.pos = he
			continue
		}
		end := min(off+s.unit, s.size)
		if hasData && !s.inWindow(off, end) {
			if zeroStart >= 0 {
				s.pos = zeroStart // rescan it with the next window
			}
			return nil
		}
		b, err := s.window(off, end)
		if err != nil {
			return err
		}
		s.pos = end
		if s.zeros[(off-s.winOff)/s.unit] {
			if zeroStart < 0 {
				zeroStart = off
			}
			continue
		}
		if zeroStart >= 0 {
			s.appendZero(zeroStart, off)
			zeroStart = -1
		}
		s.batch = append(s.batch, Chunk{Offset: off, Length: len(b), Data: b})
		hasData = true
	}
	if zeroStart >= 0 {
		s.appendZero(zeroStart, s.pos)
	}
	return nil
}

// fillCDC cuts zero runs (whole zero pages and holes) out first and runs
// content-defined chunking over each run of non-zero pages, restarting the
// fingerprint at every run so that a run's chunks depend on its bytes only.
func (s *Splitter) fillCDC() error {
	used := 0
	for used < len(s.buf) {
		if s.inSeg {
			c, err := s.cdc.Next(s.arena[used:used:len(s.arena)])
			if errors.Is(err, io.EOF) {
				s.inSeg = false
				s.pos = s.seg.pos
				continue
			}
			if err != nil {
				return fmt.Errorf("split at %d: %w", s.segStart, err)
			}
			s.batch = append(s.batch, Chunk{Offset: s.segStart + int64(c.Start), Length: int(c.Length), Data: c.Data})
			used += int(c.Length)
			continue
		}
		if s.pos >= s.size {
			break
		}
		start := s.pos
		for s.pos < s.size {
			if he := s.holeEnd(s.pos); he > s.pos {
				s.pos = he
				continue
			}
			zero, err := s.zeroPage(s.pos)
			if err != nil {
				return err
			}
			if !zero {
				break
			}
			s.pos = min(s.pos+PageSize, s.size)
		}
		if s.pos > start {
			s.appendZero(start, s.pos)
			continue
		}
		s.segStart = s.pos
		s.seg = segmentReader{s: s, pos: s.pos}
		s.cdc.ResetWithBoundaries(&s.seg, s.p.Pol, uint(s.p.Min), uint(s.p.Max))
		s.cdc.SetAverageBits(bits.TrailingZeros(uint(s.p.Avg)))
		s.inSeg = true
	}
	return nil
}

// zeroPage reports whether the page at the page-aligned offset off is all
// zero, reading it only if it overlaps data.
func (s *Splitter) zeroPage(off int64) (bool, error) {
	end := min(off+PageSize, s.size)
	if s.nextData(off) >= end {
		return true, nil
	}
	b, err := s.window(off, end)
	if err != nil {
		return false, err
	}
	return IsZero(b), nil
}

func (s *Splitter) appendZero(start, end int64) {
	step := maxZeroRun / s.unit * s.unit
	for start < end {
		n := min(end-start, step)
		s.batch = append(s.batch, Chunk{Offset: start, Length: int(n), Zero: true})
		start += n
	}
}

// sumChunks sets the IDs of the non-zero chunks of cs.
func sumChunks(cs []Chunk) {
	var s Summer
	for i := range cs {
		if c := &cs[i]; !c.Zero {
			s.Add(c.Data, &c.ID)
		}
	}
	s.Flush()
}

// hashBatch computes the IDs of the batch's non-zero chunks, splitting them
// into contiguous shards of about equal bytes, one per worker.
func (s *Splitter) hashBatch() error {
	total := 0
	for i := range s.batch {
		if !s.batch[i].Zero {
			total += s.batch[i].Length
		}
	}
	if s.workers <= 1 || total < parallelMin {
		return Guard(func() error { sumChunks(s.batch); return nil })
	}
	var shards []func()
	per := (total + s.workers - 1) / s.workers
	lo, acc := 0, 0
	for i := range s.batch {
		if !s.batch[i].Zero {
			acc += s.batch[i].Length
		}
		if acc >= per || i == len(s.batch)-1 {
			shard := s.batch[lo : i+1]
			shards = append(shards, func() { sumChunks(shard) })
			lo, acc = i+1, 0
		}
	}
	return guardAll(shards)
}

// nextData returns the first offset >= off that lies in a data region, or
// the file size when the rest is hole.
func (s *Splitter) nextData(off int64) int64 {
	i := sort.Search(len(s.regions), func(i int) bool { return s.regions[i].End() > off })
	if i == len(s.regions) {
		return s.size
	}
	return max(off, s.regions[i].Offset)
}

// holeEnd returns the end of the whole units of hole starting at the
// unit-aligned offset off (off itself when off's unit holds data).
func (s *Splitter) holeEnd(off int64) int64 {
	nd := s.nextData(off)
	if nd >= s.size {
		return s.size
	}
	return off + (nd-off)/s.unit*s.unit
}

func (s *Splitter) inWindow(off, end int64) bool {
	return off >= s.winOff && end <= s.winOff+int64(s.winLen)
}

// window returns the bytes [off,end) of the file, loading a new window at
// off when they are not in the current one.
func (s *Splitter) window(off, end int64) ([]byte, error) {
	if !s.inWindow(off, end) {
		if err := s.load(off); err != nil {
			return nil, err
		}
	}
	return s.win[off-s.winOff : end-s.winOff], nil
}

// readThroughHole is the longest hole load reads through rather than
// around: a hole reads as zeros at memory speed, and a ReadAt more costs a
// system call. Measured on the 2-core VM, a 4 GiB memory image with 30 %
// of its pages punched out at random: 220389 reads of its data regions
// took 1.83 s, 8 MiB reads of everything 0.82 s.
const readThroughHole = 64 << 10

// load fills the window starting at off. A window that lies in one data
// region of an *os.File is mapped (see mapper); otherwise data regions are
// read with one ReadAt each, or one for several separated by short holes,
// and the bytes of longer holes are zeroed, never read.
func (s *Splitter) load(off int64) error {
	n := int(min(int64(cap(s.buf)), s.size-off))
	s.winOff, s.winLen = off, 0 // invalid until fully loaded
	if s.mapper != nil {
		// A Fixed splitter never reads a hole unit (fillFixed skips them,
		// markZeros marks them without reading): its windows with holes
		// are mapped too, but not populated, so that only the data pages
		// read are faulted in and no hole gets a page in the page cache.
		one := s.inOneRegion(off, off+int64(n))
		if one || s.p.Method == Fixed {
			if w, ok := s.mapper.window(off, n, one); ok {
				s.win, s.winLen, s.winHoles = w, n, !one
				return s.markZeros()
			}
		}
	}
	s.mapper.release()
	buf := s.buf[:n]
	end := off + int64(n)
	cur := off
	i := sort.Search(len(s.regions), func(i int) bool { return s.regions[i].End() > off })
	for ; i < len(s.regions) && s.regions[i].Offset < end; i++ {
		a, b := max(s.regions[i].Offset, off), min(s.regions[i].End(), end)
		for i+1 < len(s.regions) && s.regions[i+1].Offset < end && s.regions[i+1].Offset-b <= readThroughHole {
			i++
			b = min(s.regions[i].End(), end)
		}
		clear(buf[cur-off : a-off])
		p := buf[a-off : b-off]
		got, err := s.r.ReadAt(p, a)
		if got < len(p) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read %d bytes at %d: %w", len(p), a, err)
		}
		cur = b
	}
	clear(buf[cur-off:])
	s.win, s.winLen, s.winHoles = buf, n, false
	return s.markZeros()
}

// inOneRegion reports whether [off, end) lies in one data region.
func (s *Splitter) inOneRegion(off, end int64) bool {
	i := sort.Search(len(s.regions), func(i int) bool { return s.regions[i].End() > off })
	return i < len(s.regions) && s.regions[i].Offset <= off && s.regions[i].End() >= end
}

// markZeros finds the all-zero units of a Fixed splitter's window on all
// workers. A data page fails the test within its first bytes, a zero page
// is read to its end, and read through the file's mapping, from memory
// rather than cache, at a fraction of what one core could scan: on a dense
// memory image, half zero, this scan was the largest CPU cost of a re-push
// once the pages were hashed with AVX-512, so it is spread like the
// hashing.
func (s *Splitter) markZeros() error {
	if s.p.Method != Fixed {
		return nil
	}
	unit := int(s.unit)
	n := (s.winLen + unit - 1) / unit
	s.zeros = slices.Grow(s.zeros[:0], n)[:n]
	mark := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			a, b := i*unit, min((i+1)*unit, s.winLen)
			if s.winHoles && s.nextData(s.winOff+int64(a)) >= s.winOff+int64(b) {
				s.zeros[i] = true // a hole: never read through the mapping
				continue
			}
			s.zeros[i] = IsZero(s.win[a:b])
		}
	}
	if s.workers <= 1 || s.winLen < parallelMin {
		return Guard(func() error { mark(0, n); return nil })
	}
	per := (n + s.workers - 1) / s.workers
	var parts []func()
	for lo := 0; lo < n; lo += per {
		parts = append(parts, func() { mark(lo, min(lo+per, n)) })
	}
	return guardAll(parts)
}

// Close releases the file mapping of the current window, if any (a
// splitter that returned io.EOF or an error has released it already).
// Chunks returned before are invalid afterwards.
func (s *Splitter) Close() error {
	s.mapper.release()
	s.win, s.winLen = nil, 0
	return nil
}

// segmentReader feeds the CDC chunker one run of non-zero pages: it serves
// bytes from the splitter's window page by page and reports io.EOF at the
// first zero page, hole page or the end of the file.
type segmentReader struct {
	s    *Splitter
	pos  int64
	done bool
}

func (g *segmentReader) Read(p []byte) (int, error) {
	s := g.s
	n := 0
	for n < len(p) && !g.done {
		if g.pos >= s.size {
			g.done = true
			break
		}
		if g.pos&(PageSize-1) == 0 {
			zero, err := s.zeroPage(g.pos)
			if err != nil {
				return n, err
			}
			if zero {
				g.done = true
				break
			}
		}
		// The page at g.pos is data and in the window: extend over the
		// following data pages of the window, then copy them at once.
		end := min(g.pos&^(PageSize-1)+PageSize, s.size)
		limit := min(g.pos+int64(len(p)-n), s.winOff+int64(s.winLen))
		for end < limit {
			next := min(end+PageSize, s.size)
			if next > limit || s.nextData(end) >= next || IsZero(s.win[end-s.winOff:next-s.winOff]) {
				break
			}
			end = next
		}
		b, err := s.window(g.pos, end)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], b)
		n += k
		g.pos += int64(k)
	}
	if n == 0 && g.done {
		return 0, io.EOF
	}
	return n, nil
}
