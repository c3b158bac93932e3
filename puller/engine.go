package puller

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/pack"
)

// Defaults for Options' zero values.
const (
	DefaultConcurrency = 8
	DefaultMaxRunBytes = 8 << 20
	DefaultMaxGap      = 256 << 10
)

var (
	// ErrChunkMissing: a recipe names a chunk the store index does not know.
	ErrChunkMissing = errors.New("chunk missing from store")
	// ErrDigestMismatch: a written file does not hash to its recorded digest.
	ErrDigestMismatch = errors.New("file digest mismatch")
	// ErrFileTooLarge: a recipe describes a file over MaxFileSize.
	ErrFileTooLarge = errors.New("file too large")
)

// MaxFileSize bounds a file a fetch writes: 16 TiB, ext4's limit with 4 KiB
// blocks, far above any guest memory or disk image. XFS and btrfs take
// larger sparse files, and a recipe of holes passes every size check but
// this one: its digest covers every byte, so a hostile 512 TiB of holes
// would keep a pull hashing zeros for days. 16 TiB of holes still take
// hours; the digest cannot skip them.
const MaxFileSize = 16 << 40

// PackReader reads a byte range of a pack from wherever packs are stored.
// The engine verifies every chunk it extracts, so implementations need not.
type PackReader interface {
	ReadPack(ctx context.Context, pack chunk.ID, offset, length int64) (io.ReadCloser, error)
}

// Options tune an Engine. The zero value of each field selects its default.
type Options struct {
	// Concurrency is how many ranged reads run at once (default 8).
	Concurrency int
	// MaxRunBytes caps one ranged read (default 8 MiB): a read that fails
	// part-way is retried whole, so smaller costs less to redo. A worker
	// streams its read and holds one block at a time, whatever this is.
	MaxRunBytes int64
	// MaxGap is how many unneeded bytes between two needed blocks of a pack
	// are read anyway to save a request (default 256 KiB).
	MaxGap int64
	// NoLocal disables copying chunks from local files.
	NoLocal bool
	// Defer, when set, is handed the recording of each verified file's
	// chunks (File.Record) instead of Fetch running it before it returns:
	// the caller may run it off the pull's critical path (a 4 GiB memory
	// file's million chunks took 1.4 s to record on the 2-core VM, the
	// file already complete) and must wait for it before a later Fetch
	// that should copy from the file.
	Defer func(record func())
}

// Stats counts what a Fetch did.
type Stats struct {
	Files           int64 // files written
	RawBytes        int64 // bytes of the files, holes included
	Chunks          int64 // data extents in the recipes
	UniqueChunks    int64 // distinct chunk IDs among them
	ResumedChunks   int64 // chunks already in place from an earlier, interrupted run
	LocalChunks     int64 // distinct chunks copied from local files
	RemoteChunks    int64 // distinct chunks read from the store
	ReusedBytes     int64 // raw bytes taken from local files (resumed or copied)
	ClonedBytes     int64 // of ReusedBytes, shared with their source by a reflink instead of written
	DownloadedBytes int64 // bytes read from packs (compressed, gaps included)
	Requests        int64 // ranged reads sent
}

// File is one file for Fetch to write.
type File struct {
	// Path is where to write. It is created if missing. With Resume it is
	// kept and its existing bytes are checked chunk by chunk; otherwise it is
	// truncated.
	Path   string
	Recipe *manifest.Recipe
	// Digest is the SHA-256 hex the finished file must have; empty skips the
	// check.
	Digest string
	Mode   os.FileMode
	Resume bool
	// Record, when set, is the absolute path the caller moves the file to
	// once Fetch succeeds (a rename keeps inode, size and mtime): the
	// engine then records the file's chunks in the node index under that
	// path, from what it already holds, so the caller need not keep the
	// recipe for it. Chunks a resumed run found in place are not recorded.
	Record string
}

// Engine fetches files described by recipes. It is safe for concurrent use.
type Engine struct {
	idx   *index.DB
	packs PackReader
	opts  Options
}

// New returns an engine that finds chunks through idx and reads packs
// through packs. opts may be nil.
func New(idx *index.DB, packs PackReader, opts *Options) *Engine {
	e := &Engine{idx: idx, packs: packs}
	if opts != nil {
		e.opts = *opts
	}
	if e.opts.Concurrency <= 0 {
		e.opts.Concurrency = DefaultConcurrency
	}
	if e.opts.MaxRunBytes <= 0 {
		e.opts.MaxRunBytes = DefaultMaxRunBytes
	}
	if e.opts.MaxGap <= 0 {
		e.opts.MaxGap = DefaultMaxGap
	}
	return e
}

// target is one place a chunk must be written.
type target struct {
	id     chunk.ID
	file   int32
	length uint32
	offset int64
}

// fetch is the state of one Fetch call.
type fetch struct {
	e     *Engine
	files []*os.File
	// writeMu[i] serialises the writes to files[i]. The kernel does too
	// (ext4 takes the inode lock for every buffered write), but it spins
	// for it: eight download workers writing one file spent a fifth of a
	// cold pull's CPU in rwsem_spin_on_owner (perf, 2-core VM). A waiting
	// goroutine parks instead and its core decompresses and hashes.
	writeMu []sync.Mutex
	targets []target // sorted by id
	// buckets[b] is the first target whose id's leading bucketBits bits
	// are b (targetsOf).
	buckets    []int32
	bucketBits uint
	stats      Stats
	progress   func(Stats)
	mu         sync.Mutex // serialises progress callbacks
	// Per file, what finish needs of its recipe: size and zero runs.
	sizes []int64
	holes [][]span

	// The download workers count into these, never into stats: a progress
	// report copies stats while other workers are still counting.
	downloaded atomic.Int64
	requests   atomic.Int64
	// noClone is set once the filesystem refused a clone, cloned once one
	// worked.
	noClone, cloned atomic.Bool
}

// Fetch writes every file, reading each distinct chunk once, verifying it,
// and checking each file's digest at the end. Files are left open nowhere:
// on return they are closed and, on success, synced. On error the files
// hold partial content; callers write to staging paths and rename only on
// success.
func (e *Engine) Fetch(ctx context.Context, files []File, progress func(Stats)) (Stats, error) {
	f := &fetch{e: e, progress: progress}
	defer f.closeAll()
	for _, file := range files {
		if file.Recipe != nil && file.Recipe.Size > MaxFileSize {
			return f.snapshot(), fmt.Errorf("fetch %s: %w: %d bytes, limit %d", file.Path, ErrFileTooLarge, file.Recipe.Size, int64(MaxFileSize))
		}
	}
	if err := checkSpace(files); err != nil {
		return f.snapshot(), fmt.Errorf("fetch: %w", err)
	}
	if err := f.open(files); err != nil {
		return f.snapshot(), err
	}
	if err := f.plan(files); err != nil {
		return f.snapshot(), err
	}
	// From here on only the targets describe the files: let the recipes
	// go (48 bytes per extent, 48 MiB for a 4 GiB memory file) if the
	// caller keeps no reference either.
	files = slices.Clone(files)
	for i := range files {
		files[i].Recipe = nil
	}
	remaining, err := f.copyLocal(ctx)
	if err != nil {
		return f.snapshot(), err
	}
	if err := f.download(ctx, remaining); err != nil {
		return f.snapshot(), err
	}
	for i, file := range files {
		if err := f.finish(i, file); err != nil {
			return f.snapshot(), err
		}
		if rec := f.recorder(i, file.Record); rec != nil {
			if e.opts.Defer != nil {
				e.opts.Defer(rec)
			} else {
				rec()
			}
		}
	}
	f.report()
	return f.snapshot(), nil
}

// snapshot returns the stats so far. Only the download counters change
// while workers run, and they are atomics; every other field is written
// before the workers start or after they end.
func (f *fetch) snapshot() Stats {
	s := f.stats
	s.DownloadedBytes = f.downloaded.Load()
	s.Requests = f.requests.Load()
	return s
}

func (f *fetch) open(files []File) error {
	for _, file := range files {
		if file.Recipe == nil {
			return fmt.Errorf("fetch %s: no recipe", file.Path)
		}
		flag := os.O_RDWR | os.O_CREATE
		if !file.Resume {
			flag |= os.O_TRUNC
		}
		fh, err := os.OpenFile(file.Path, flag, 0o600)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", file.Path, err)
		}
		f.files = append(f.files, fh)
		f.writeMu = append(f.writeMu, sync.Mutex{})
		if err := fh.Truncate(file.Recipe.Size); err != nil {
			return fmt.Errorf("fetch %s: size %d: %w", file.Path, file.Recipe.Size, err)
		}
		f.stats.RawBytes += file.Recipe.Size
	}
	return nil
}

// writeAt writes b at off into file i.
func (f *fetch) writeAt(i int32, b []byte, off int64) error {
	f.writeMu[i].Lock()
	_, err := f.files[i].WriteAt(b, off)
	f.writeMu[i].Unlock()
	if err != nil {
		return fmt.Errorf("write %s: %w", f.files[i].Name(), err)
	}
	return nil
}

func (f *fetch) closeAll() {
	for _, fh := range f.files {
		_ = fh.Close()
	}
}

// plan lists every data extent and drops those already in place from an
// interrupted earlier run. In a resumed file it also clears whatever is
// not zero where the recipe has zero extents.
func (f *fetch) plan(files []File) error {
	buf := make([]byte, 0, 64<<10)
	// One allocation of the final size: growing a slice of a million
	// targets by appending cost a pull of a 4 GiB memory file about a
	// second, most of it faulting in memory that is then copied and dropped.
	n := 0
	f.holes = make([][]span, len(files))
	for i, file := range files {
		holes := 0
		for _, ext := range file.Recipe.Extents {
			if !ext.Zero {
				n++
			} else {
				holes++
			}
		}
		f.holes[i] = make([]span, 0, holes)
		f.sizes = append(f.sizes, file.Recipe.Size)
	}
	f.targets = slices.Grow(f.targets, n)
	for i, file := range files {
		var off int64
		var regions []chunk.Region
		if file.Resume {
			var err error
			if regions, err = chunk.DataRegions(f.files[i], file.Recipe.Size); err != nil {
				return fmt.Errorf("resume %s: %w", file.Path, err)
			}
		}
		for _, ext := range file.Recipe.Extents {
			length := int64(ext.Length)
			if ext.Zero {
				f.holes[i] = append(f.holes[i], span{off, length})
			}
			if ext.Zero && file.Resume {
				var err error
				if regions, buf, err = f.zeroed(i, off, length, regions, buf); err != nil {
					return err
				}
			}
			if !ext.Zero {
				f.stats.Chunks++
				t := target{id: ext.ID, file: int32(i), length: uint32(length), offset: off}
				done := false
				if file.Resume {
					var err error
					buf, done, err = f.inPlace(buf, t)
					if err != nil {
						return err
					}
				}
				if done {
					f.stats.ResumedChunks++
					f.stats.ReusedBytes += length
				} else {
					f.targets = append(f.targets, t)
				}
			}
			off += length
		}
	}
	slices.SortFunc(f.targets, func(a, b target) int {
		if c := compareID(a.id, b.id); c != 0 {
			return c
		}
		return int(a.file) - int(b.file)
	})
	f.bucketTargets()
	return nil
}

// inPlace reports whether the bytes at t already hash to t.id.
func (f *fetch) inPlace(buf []byte, t target) ([]byte, bool, error) {
	buf = slices.Grow(buf[:0], int(t.length))[:t.length]
	n, err := f.files[t.file].ReadAt(buf, t.offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return buf, false, fmt.Errorf("resume %s: %w", f.files[t.file].Name(), err)
	}
	return buf, n == len(buf) && chunk.Sum(buf) == t.id, nil
}

// zeroed makes [off, off+length) of resumed file i read as zeros. Zero
// extents are never written and finish hashes them as zeros without
// reading them, so bytes an earlier writer left there would survive into a
// file that passes its digest check. Only the data regions of the file
// (SEEK_DATA) are read, so the holes of a sparse file cost nothing, and
// only pieces that are not zero are overwritten. regions is the file's data
// regions from off on; it is returned advanced for the next extent.
func (f *fetch) zeroed(i int, off, length int64, regions []chunk.Region, buf []byte) ([]chunk.Region, []byte, error) {
	fh := f.files[i]
	end := off + length
	for len(regions) > 0 && regions[0].End() <= off {
		regions = regions[1:]
	}
	for _, r := range regions {
		if r.Offset >= end {
			break
		}
		for p, hi := max(r.Offset, off), min(r.End(), end); p < hi; {
			n := min(hi-p, 1<<20)
			buf = slices.Grow(buf[:0], int(n))[:n]
			if _, err := fh.ReadAt(buf, p); err != nil && !errors.Is(err, io.EOF) {
				return regions, buf, fmt.Errorf("resume %s: %w", fh.Name(), err)
			}
			if !chunk.IsZero(buf) {
				clear(buf)
				if _, err := fh.WriteAt(buf, p); err != nil {
					return regions, buf, fmt.Errorf("resume %s: clear zero extent: %w", fh.Name(), err)
				}
			}
			p += n
		}
	}
	return regions, buf, nil
}

// unique returns the distinct chunks of targets, in order, each as the
// index of its first target: 4 bytes a chunk where a list of their IDs
// took 32 (22 MB for a 4 GiB memory file, held through the download).
func (f *fetch) unique() []int32 {
	n := 0
	for i, t := range f.targets {
		if i == 0 || t.id != f.targets[i-1].id {
			n++
		}
	}
	// Counted first: appending a million entries peaked at half as much again.
	firsts := make([]int32, 0, n)
	for i, t := range f.targets {
		if i == 0 || t.id != f.targets[i-1].id {
			firsts = append(firsts, int32(i))
		}
	}
	return firsts
}

// lookupBlock is how many chunk IDs a lookup in the node index is given at
// once: each block's IDs are built from the targets, then dropped.
const lookupBlock = 1 << 16

// inBlocks calls fn with the IDs of firsts (see unique), lookupBlock at a
// time, and the position of each block's first in firsts.
func (f *fetch) inBlocks(firsts []int32, fn func(base int, ids []chunk.ID) error) error {
	ids := make([]chunk.ID, 0, min(len(firsts), lookupBlock))
	for base := 0; base < len(firsts); base += lookupBlock {
		ids = ids[:0]
		for _, t := range firsts[base:min(len(firsts), base+lookupBlock)] {
			ids = append(ids, f.targets[t].id)
		}
		if err := fn(base, ids); err != nil {
			return err
		}
	}
	return nil
}

// targetsOf returns the targets of id. Every chunk written asks it, so it
// searches only the few targets of id's bucket (see bucketTargets): a
// binary search over a million targets cost a pull of a 4 GiB memory file
// over 2 s of CPU.
func (f *fetch) targetsOf(id chunk.ID) []target {
	b := bucketOf(id, f.bucketBits)
	in := f.targets[f.buckets[b]:f.buckets[b+1]]
	lo, _ := slices.BinarySearchFunc(in, id, func(t target, id chunk.ID) int { return compareID(t.id, id) })
	hi := lo
	for hi < len(in) && in[hi].id == id {
		hi++
	}
	return in[lo:hi]
}

// bucketTargets indexes the sorted targets by the leading bits of their
// ids, about four targets per bucket: chunk ids are hashes, so their
// leading bits are uniform. buckets[b] is the first target of bucket b.
func (f *fetch) bucketTargets() {
	f.bucketBits = 0
	for 1<<f.bucketBits < len(f.targets)/4 && f.bucketBits < 24 {
		f.bucketBits++
	}
	f.buckets = make([]int32, 1<<f.bucketBits+1)
	i := 0
	for b := range f.buckets {
		for i < len(f.targets) && int(bucketOf(f.targets[i].id, f.bucketBits)) < b {
			i++
		}
		f.buckets[b] = int32(i)
	}
}

func bucketOf(id chunk.ID, bits uint) uint64 {
	return binary.BigEndian.Uint64(id[:8]) >> (64 - bits) & (1<<bits - 1)
}

// copyLocal copies the chunks local files hold and returns the IDs still
// to download. It finds a source for every chunk in one index transaction,
// then copies in the order of the files being written: an earlier revision
// lays its pages out as the new one does, so neighbouring chunks become one
// read and one write instead of a random 4 KiB write each, which a
// filesystem allocating a sparse file pays dearly for.
func (f *fetch) copyLocal(ctx context.Context) ([]int32, error) {
	firsts := f.unique()
	f.stats.UniqueChunks = int64(len(firsts))
	if f.e.opts.NoLocal || f.e.idx == nil || len(firsts) == 0 {
		return firsts, nil
	}
	sources := newLocalSources()
	defer sources.close()
	// Per unique chunk: the local file to copy it from (noSource when none)
	// and the offset there.
	src := make([]int32, len(firsts))
	srcOff := make([]int64, len(firsts))
	for k := range src {
		src[k] = noSource
	}
	err := f.inBlocks(firsts, func(base int, ids []chunk.ID) error {
		return f.e.idx.FindLocalMany(ids, func(i int, refs []index.LocalRef) error {
			k := base + i
			for _, ref := range refs {
				if n := sources.index(ref); n >= 0 && ref.Length == f.targets[firsts[k]].length {
					src[k], srcOff[k] = int32(n), ref.Offset
					return nil
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}

	order := make([]copyItem, 0, len(f.targets))
	k := 0 // the chunk of target i: firsts[k] <= i < firsts[k+1]
	for i := range f.targets {
		for k+1 < len(firsts) && int(firsts[k+1]) <= i {
			k++
		}
		if src[k] != noSource {
			order = append(order, copyItem{t: int32(i), k: int32(k)})
		}
	}
	slices.SortFunc(order, func(a, b copyItem) int {
		ta, tb := &f.targets[a.t], &f.targets[b.t]
		if ta.file != tb.file {
			return int(ta.file) - int(tb.file)
		}
		return cmp.Compare(ta.offset, tb.offset)
	})

	// Reading, hashing and writing a multi-GiB file's worth of local chunks
	// is most of a warm pull: split it into contiguous parts, one copier
	// each, so the hashing uses every core. A part boundary costs at most
	// one more read and write.
	workers := max(1, min(f.e.opts.Concurrency, runtime.GOMAXPROCS(0), len(order)/copyPartMin))
	copiers := make([]localCopier, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range copiers {
		part := order[len(order)*w/workers : len(order)*(w+1)/workers]
		cp := &copiers[w]
		*cp = localCopier{f: f, sources: sources, src: src, srcOff: srcOff}
		wg.Go(func() {
			for _, it := range part {
				if errs[w] = ctx.Err(); errs[w] != nil {
					return
				}
				if errs[w] = cp.add(it); errs[w] != nil {
					return
				}
			}
			if errs[w] = cp.flush(); errs[w] == nil {
				errs[w] = cp.flushClone()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for _, cp := range copiers {
		f.stats.ReusedBytes += cp.reused
		f.stats.ClonedBytes += cp.cloned
	}
	// In place: a cold pull keeps nearly all of them.
	remaining := firsts[:0]
	for k, first := range firsts {
		switch src[k] {
		case noSource, badSource:
			remaining = append(remaining, first)
		default:
			f.stats.LocalChunks++
		}
	}
	// A chunk that failed its hash after some of its places were written
	// is written again, whole, by the download.
	return remaining, nil
}

const (
	noSource  = -1 // no local file holds the chunk
	badSource = -2 // the local copy did not hash to the chunk's ID
)

// copyItem is a target (an index into fetch.targets) with its chunk (an
// index into the unique ids).
type copyItem struct{ t, k int32 }

// copyPartMin is the fewest targets worth a copier of their own.
const copyPartMin = 4096

// localCopier gathers targets whose local sources and destinations are
// both contiguous into one read and one write. Several copiers run at
// once on disjoint targets; src is shared, and a chunk that appears at
// several places can be marked bad by two of them, hence the atomics.
type localCopier struct {
	f       *fetch
	sources *localSources
	src     []int32
	srcOff  []int64
	reused  int64 // bytes written or cloned, summed into stats by copyLocal
	cloned  int64 // bytes cloned

	run     []copyItem
	runSrc  int32
	srcEnd  int64
	dstEnd  int64
	runSize int
	buf     []byte
	ids     []chunk.ID // the run's hashes

	// pending is a verified range not cloned yet: the runs that follow
	// it in both files join it, so one ioctl clones many of them.
	pending cloneRange
}

// cloneRange is a range of a local source to clone into a target file.
type cloneRange struct {
	src, file      int32
	srcOff, dstOff int64
	n              int64 // 0: none
}

func (c *localCopier) source(k int32) int32 { return atomic.LoadInt32(&c.src[k]) }

func (c *localCopier) markBad(k int32) { atomic.StoreInt32(&c.src[k], badSource) }

func (c *localCopier) add(it copyItem) error {
	t := &c.f.targets[it.t]
	src := c.source(it.k)
	if src < 0 {
		return nil // its copy failed earlier in this pull
	}
	if len(c.run) > 0 && (src != c.runSrc || c.srcOff[it.k] != c.srcEnd ||
		t.file != c.f.targets[c.run[0].t].file || t.offset != c.dstEnd || c.runSize+int(t.length) > coalesceMax) {
		if err := c.flush(); err != nil {
			return err
		}
	}
	if len(c.run) == 0 {
		c.runSrc = src
	}
	c.run = append(c.run, it)
	c.srcEnd = c.srcOff[it.k] + int64(t.length)
	c.dstEnd = t.offset + int64(t.length)
	c.runSize += int(t.length)
	return nil
}

// flush reads the run's bytes once, checks every chunk's hash, and writes
// the run (or, when a chunk fails, only the chunks that pass).
func (c *localCopier) flush() error {
	if len(c.run) == 0 {
		return nil
	}
	defer func() { c.run, c.runSize = c.run[:0], 0 }()
	first := &c.f.targets[c.run[0].t]
	start := c.srcOff[c.run[0].k]
	c.buf = slices.Grow(c.buf[:0], c.runSize)[:c.runSize]
	fh := c.sources.files[c.runSrc]
	if n, err := fh.ReadAt(c.buf, start); err != nil || n != len(c.buf) {
		// The file shrank or vanished since it was indexed: download.
		for _, it := range c.run {
			c.markBad(it.k)
		}
		return nil
	}
	c.ids = slices.Grow(c.ids[:0], len(c.run))[:len(c.run)]
	var sum chunk.Summer
	var off int
	for i, it := range c.run {
		n := int(c.f.targets[it.t].length)
		sum.Add(c.buf[off:off+n], &c.ids[i])
		off += n
	}
	sum.Flush()
	good := true
	for i, it := range c.run {
		if c.ids[i] != c.f.targets[it.t].id {
			c.markBad(it.k)
			good = false
		}
	}
	if good {
		cloned, err := c.clone(first, start)
		if err != nil {
			return err
		}
		c.reused += int64(len(c.buf))
		if cloned {
			return nil
		}
		if err := c.f.writeAt(first.file, c.buf, first.offset); err != nil {
			return err
		}
		return nil
	}
	off = 0
	for _, it := range c.run {
		t := &c.f.targets[it.t]
		data := c.buf[off : off+int(t.length)]
		off += int(t.length)
		if c.source(it.k) < 0 {
			continue
		}
		if err := c.f.writeAt(first.file, data, t.offset); err != nil {
			return err
		}
		c.reused += int64(len(data))
	}
	return nil
}

// cloneAlign is the alignment a run needs to be cloned: the block size of
// the filesystems that clone (4 KiB). Memory files and disk images are
// chunked in 4 KiB pages at page offsets, so their runs qualify.
const cloneAlign = 4096

// clone makes the run, whose bytes were just read and verified, share its
// source's blocks instead of being written, where the filesystem can
// (XFS with reflink, btrfs): the new file then costs no page cache and no
// writeback. A source changed between the check and the clone cannot pass
// unnoticed: the file's SHA-256 is computed from what it holds at the end.
// Runs that continue the pending range in both files join it (a clone
// costs about a millisecond on XFS, and a 512 MiB file has 512 runs); it
// is cloned when the next run does not, or at the end (flushClone). The
// first refusal turns cloning off for the rest of the fetch.
func (c *localCopier) clone(first *target, srcOff int64) (bool, error) {
	f := c.f
	n := int64(len(c.buf))
	if f.noClone.Load() || srcOff%cloneAlign != 0 || first.offset%cloneAlign != 0 || n%cloneAlign != 0 {
		return false, nil
	}
	p := &c.pending
	if p.n > 0 && p.src == c.runSrc && p.file == first.file && p.srcOff+p.n == srcOff && p.dstOff+p.n == first.offset && p.n+n <= cloneMax {
		p.n += n
		return true, nil
	}
	if err := c.flushClone(); err != nil {
		return false, err
	}
	if f.noClone.Load() {
		return false, nil
	}
	rng := cloneRange{src: c.runSrc, file: first.file, srcOff: srcOff, dstOff: first.offset, n: n}
	if !f.cloned.Load() {
		// Not known to work here yet: try now, while the verified bytes are
		// at hand to be written if the filesystem refuses (ext4 does).
		if !c.cloneNow(rng) {
			return false, nil
		}
		f.cloned.Store(true)
		return true, nil
	}
	*p = rng
	return true, nil
}

// cloneNow clones rng and counts it; a refusal turns cloning off.
func (c *localCopier) cloneNow(rng cloneRange) bool {
	f := c.f
	f.writeMu[rng.file].Lock()
	err := cloneFile(f.files[rng.file], c.sources.files[rng.src], rng.dstOff, rng.srcOff, rng.n)
	f.writeMu[rng.file].Unlock()
	if err != nil {
		f.noClone.Store(true)
		return false
	}
	c.cloned += rng.n
	return true
}

// cloneMax bounds a pending clone: what is copied again if it fails.
const cloneMax = 64 << 20

// flushClone clones the pending range. If it is refused after clones
// worked (a source on another filesystem), the range is copied instead,
// its bytes read again (they were verified when first read; the file's
// SHA-256 covers a change since).
func (c *localCopier) flushClone() error {
	p := c.pending
	if p.n == 0 {
		return nil
	}
	c.pending = cloneRange{}
	if c.cloneNow(p) {
		return nil
	}
	f, src := c.f, c.sources.files[p.src]
	buf := make([]byte, min(p.n, coalesceMax))
	for off := int64(0); off < p.n; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), p.n-off)]
		if _, err := src.ReadAt(b, p.srcOff+off); err != nil {
			return fmt.Errorf("copy %s: %w", src.Name(), err)
		}
		if err := f.writeAt(p.file, b, p.dstOff+off); err != nil {
			return err
		}
	}
	return nil
}

// located is where one chunk to download lies: pack (a number local to
// one download), the chunk (its first target) and the block. It is
// what a pack.Entry says in 32 bytes instead of 56 and no id copy: a pull of
// a 4 GiB memory file holds one per chunk, 671000 of them.
type located struct {
	pack        int32
	target      int32 // the chunk's first target in fetch.targets
	blockOffset uint64
	blockLength uint32
	offset      uint32
	length      uint32
}

// download reads the remaining chunks from the store. Their locations are
// looked up and grouped by pack; a producer turns one pack at a time into
// coalesced runs in offset order (reads sequential per object) while the
// workers read, so only the packs in flight have their entries built.
func (f *fetch) download(ctx context.Context, firsts []int32) error {
	if len(firsts) == 0 {
		return nil
	}
	if f.e.idx == nil {
		// Without an index no chunk can be located; say so instead of
		// dereferencing nil (copyLocal already allows a nil index).
		return fmt.Errorf("%w: %s (no store index)", ErrChunkMissing, f.targets[firsts[0]].id)
	}
	var (
		packs   []chunk.ID
		packNo  = make(map[chunk.ID]int32)
		recs    = make([]located, 0, len(firsts))
		missing error
	)
	err := f.inBlocks(firsts, func(base int, ids []chunk.ID) error {
		return f.e.idx.LookupMany(ids, func(i int, loc index.Location, ok bool) {
			if !ok {
				if missing == nil {
					missing = fmt.Errorf("%w: %s", ErrChunkMissing, ids[i])
				}
				return
			}
			n, seen := packNo[loc.Pack]
			if !seen {
				n = int32(len(packs))
				packNo[loc.Pack] = n
				packs = append(packs, loc.Pack)
			}
			recs = append(recs, located{
				pack: n, target: firsts[base+i], blockOffset: loc.BlockOffset, blockLength: loc.BlockLength,
				offset: loc.Offset, length: loc.Length,
			})
		})
	})
	if err != nil {
		return fmt.Errorf("look up chunks: %w", err)
	}
	if missing != nil {
		return missing
	}
	f.stats.RemoteChunks = int64(len(firsts))
	// Group by pack; PlanRuns orders each pack's chunks by offset.
	slices.SortFunc(recs, func(a, b located) int { return cmp.Compare(a.pack, b.pack) })

	type job struct {
		pack chunk.ID
		run  pack.Run
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	workers := min(f.e.opts.Concurrency, len(recs))
	jobs := make(chan job, workers)
	wg.Go(func() {
		defer close(jobs)
		for rest := recs; len(rest) > 0; {
			n := 1
			for n < len(rest) && rest[n].pack == rest[0].pack {
				n++
			}
			group := rest[:n]
			rest = rest[n:]
			entries := make([]pack.Entry, len(group))
			for j, r := range group {
				entries[j] = pack.Entry{
					ID: f.targets[r.target].id, BlockOffset: r.blockOffset, BlockLength: r.blockLength,
					Offset: r.offset, Length: r.length,
				}
			}
			p := packs[group[0].pack]
			for _, run := range splitRuns(pack.PlanRuns(entries, uint64(f.e.opts.MaxGap)), uint64(f.e.opts.MaxRunBytes)) {
				select {
				case jobs <- job{pack: p, run: run}:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	for range workers {
		wg.Go(func() {
			var x pack.Extractor
			for j := range jobs {
				if ctx.Err() != nil {
					return
				}
				if err := f.fetchRun(ctx, &x, j.pack, j.run); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// readAttempts bounds the reads of one run: a body cut part-way is read
// again from the first block not yet written, not from the run's start.
const readAttempts = 3

// fetchRun reads one run of pack p and writes its chunks as they stream
// in: a worker holds one block, not the run.
func (f *fetch) fetchRun(ctx context.Context, x *pack.Extractor, p chunk.ID, run pack.Run) error {
	w := coalescer{f: f}
	var err error
	for attempt := 1; ; attempt++ {
		var done int // entries of run handed to the coalescer
		var cut bool
		done, cut, err = f.readRun(ctx, x, &w, p, run)
		if err == nil || !cut || attempt == readAttempts || ctx.Err() != nil {
			break
		}
		// Entries come in block order and a read fails only between
		// blocks, so every block before the first undone entry is written.
		rest := run.Entries[done:]
		end := run.Offset + run.Length
		run = pack.Run{Offset: rest[0].BlockOffset, Length: end - rest[0].BlockOffset, Entries: rest}
	}
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return fmt.Errorf("read pack %s [%d,+%d): %w", p, run.Offset, run.Length, err)
	}
	f.report()
	return nil
}

// readRun is one ranged read of run. It returns how many entries it
// delivered and whether it failed because the body ended or broke early
// (worth reading the rest again) rather than on bad data or a write.
func (f *fetch) readRun(ctx context.Context, x *pack.Extractor, w *coalescer, p chunk.ID, run pack.Run) (done int, cut bool, err error) {
	rc, err := f.e.packs.ReadPack(ctx, p, int64(run.Offset), int64(run.Length))
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = rc.Close() }()
	f.requests.Add(1)
	body := &countingReader{r: rc}
	var writeErr error
	err = x.ExtractFrom(body, run.Offset, run.Entries, func(e pack.Entry, data []byte) error {
		if writeErr = w.add(e.ID, data); writeErr == nil {
			done++
		}
		return writeErr
	})
	f.downloaded.Add(body.n)
	cut = err != nil && writeErr == nil && (body.err != nil || body.eof) && !errors.Is(err, pack.ErrCorrupt)
	return done, cut, err
}

// countingReader counts a body's bytes and remembers how it ended.
type countingReader struct {
	r   io.Reader
	n   int64
	eof bool  // the body ended (early, if the extraction still failed)
	err error // the body broke
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil:
		c.err = err
	}
	return n, err
}

// coalesceMax bounds the bytes a coalescer holds before writing.
const coalesceMax = 1 << 20

// coalescer joins writes of chunks that land next to each other in one
// file: a pack stores a file's pages in file order, so a run of 4 KiB pages
// becomes one write instead of hundreds.
type coalescer struct {
	f    *fetch
	file int32
	off  int64
	buf  []byte
}

func (c *coalescer) add(id chunk.ID, data []byte) error {
	for _, t := range c.f.targetsOf(id) {
		if int(t.length) != len(data) {
			return fmt.Errorf("chunk %s: recipe says %d bytes, chunk has %d", id, t.length, len(data))
		}
		if len(c.buf) > 0 && (t.file != c.file || t.offset != c.off+int64(len(c.buf)) || len(c.buf)+len(data) > coalesceMax) {
			if err := c.flush(); err != nil {
				return err
			}
		}
		if len(c.buf) == 0 {
			c.file, c.off = t.file, t.offset
		}
		c.buf = append(c.buf, data...)
	}
	return nil
}

func (c *coalescer) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.f.writeAt(c.file, c.buf, c.off)
	c.buf = c.buf[:0]
	return err
}

func (f *fetch) report() {
	if f.progress == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.progress(f.snapshot())
}

// finish checks file i against its digest, sets its mode and syncs it.
// The data sync runs while the digest is computed: both take seconds on a
// multi-GiB file (the one writes back what the download left dirty, the
// other reads it through the page cache), and neither needs the other.
// The mode is set only on a verified file, then synced too (metadata
// only, by then).
func (f *fetch) finish(i int, file File) error {
	fh := f.files[i]
	synced := make(chan error, 1)
	go func() { synced <- fh.Sync() }()
	var err error
	if file.Digest != "" {
		var got string
		got, err = digestFile(fh, f.sizes[i], f.holes[i])
		switch {
		case err != nil:
			err = fmt.Errorf("verify %s: %w", file.Path, err)
		case got != file.Digest:
			err = fmt.Errorf("verify %s: %w: got sha256 %s, want %s", file.Path, ErrDigestMismatch, got, file.Digest)
		}
	}
	if serr := <-synced; serr != nil && err == nil {
		err = fmt.Errorf("sync %s: %w", file.Path, serr)
	}
	if err != nil {
		return err
	}
	if file.Mode != 0 {
		if err := fh.Chmod(file.Mode.Perm()); err != nil {
			return fmt.Errorf("chmod %s: %w", file.Path, err)
		}
		if err := fh.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", file.Path, err)
		}
	}
	f.stats.Files++
	return nil
}

// span is a byte range of a file.
type span struct{ off, length int64 }

// digestFile hashes the size bytes of fh, feeding zeros for the recipe's
// zero runs (holes, sorted) instead of reading them. The data between two
// holes is read as one run: a memory image is hundreds of thousands of
// 4 KiB extents, and a read per extent would cost more than the hashing.
func digestFile(fh *os.File, size int64, holes []span) (string, error) {
	h := sha256.New()
	zeros := make([]byte, 64<<10)
	buf := make([]byte, 1<<20)
	var off int64
	data := func(end int64) error {
		if end <= off {
			return nil
		}
		_, err := io.CopyBuffer(h, io.NewSectionReader(fh, off, end-off), buf)
		return err
	}
	for _, z := range holes {
		if err := data(z.off); err != nil {
			return "", err
		}
		for n := z.length; n > 0; {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
		off = z.off + z.length
	}
	if err := data(size); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// recorder returns what notes the chunks of verified file i as held by
// path, the name the caller renames it to (File.Record), or nil when there
// is nothing to note. The file's validator is taken now, while the file is
// open. It is an optimisation of later pulls, so a failure is not one of
// this fetch.
func (f *fetch) recorder(i int, path string) func() {
	if path == "" || f.e.idx == nil {
		return nil
	}
	fi, err := f.files[i].Stat()
	if err != nil {
		return nil
	}
	targets, idx := f.targets, f.e.idx
	return func() {
		chunks := func(yield func(index.LocalChunk) bool) {
			for _, t := range targets {
				if t.file == int32(i) && !yield(index.LocalChunk{ID: t.id, Offset: t.offset, Length: t.length}) {
					return
				}
			}
		}
		_ = idx.AddLocalFile(path, index.ValidatorFor(fi), chunks)
	}
}

// splitRuns cuts runs longer than limit at block boundaries.
func splitRuns(runs []pack.Run, limit uint64) []pack.Run {
	var out []pack.Run
	for _, r := range runs {
		if r.Length <= limit {
			out = append(out, r)
			continue
		}
		var cur pack.Run
		for _, e := range r.Entries {
			end := e.BlockOffset + uint64(e.BlockLength)
			if len(cur.Entries) > 0 && end-cur.Offset > limit && e.BlockOffset >= cur.Offset+cur.Length {
				out = append(out, cur)
				cur = pack.Run{}
			}
			if len(cur.Entries) == 0 {
				cur.Offset = e.BlockOffset
			}
			cur.Entries = append(cur.Entries, e)
			cur.Length = max(cur.Length, end-cur.Offset)
		}
		if len(cur.Entries) > 0 {
			out = append(out, cur)
		}
	}
	return out
}

func compareID(a, b chunk.ID) int {
	return bytes.Compare(a[:], b[:])
}
