package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/pack"
)

const (
	batchBytes  = 2 << 20 // raw bytes handed between push stages at once
	batchChunks = 2048
	freeBatches = 4 // batches in flight: bounds push memory
)

// TransferStats counts what a push or pull moved. Byte counts of the store
// side are taken at the object-store client (real requests).
type TransferStats struct {
	Files           int64   `json:"files"`
	RawBytes        int64   `json:"raw_bytes"`              // file bytes, holes included
	DataBytes       int64   `json:"data_bytes"`             // non-zero bytes chunked
	Chunks          int64   `json:"chunks"`                 // data chunks (not holes)
	NewChunks       int64   `json:"new_chunks"`             // chunks the other side lacked
	NewBytes        int64   `json:"new_bytes"`              // raw bytes of those chunks
	ReusedBytes     int64   `json:"reused_bytes"`           // raw bytes not moved thanks to dedup
	ClonedBytes     int64   `json:"cloned_bytes,omitempty"` // of a pull's reused bytes, shared with a local file by a reflink
	UploadedBytes   int64   `json:"uploaded_bytes,omitempty"`
	DownloadedBytes int64   `json:"downloaded_bytes,omitempty"`
	Packs           int64   `json:"packs,omitempty"`
	Requests        int64   `json:"requests"`
	Seconds         float64 `json:"seconds"`
}

// Progress is called during long work with the counts so far.
type Progress func(TransferStats)

// item is one chunk inside a batch.
type item struct {
	zero   bool
	isNew  bool
	length int64
	id     chunk.ID
	start  int // offset of the data in batch.buf
}

type batch struct {
	buf   []byte // the items' bytes when copied (windows that were read)
	data  []byte // where the items' bytes are: buf, or win's mapping
	win   *chunk.Window
	items []item
	refs  sync.WaitGroup
	file  *fileHash
	// offset is the file offset of the first item; eof marks the empty
	// batch that ends a file (it is never recycled).
	offset int64
	eof    bool
}

// pusher moves chunks of one or more files into packs in the store. One
// pusher serves one push so small files share packs.
//
// Batches flow split -> classify -> (hash, pack): the caller's goroutine
// reads and chunks, one goroutine looks the chunks up in the node index,
// one hashes the file with SHA-256 and one packs the new chunks, so the
// index lookups no longer wait for the reads and the reads not for them.
type pusher struct {
	r          *Registry
	ctx        context.Context
	cancel     context.CancelCauseFunc
	free       chan *batch
	toClassify chan *batch
	toPack     chan *batch
	classified chan struct{}
	packDone   chan struct{}
	uploads    sync.WaitGroup
	upSem      chan struct{}

	mu      sync.Mutex
	pending map[chunk.ID]struct{} // queued in this push, not yet indexed
	err     error

	stats    TransferStats
	uploaded atomic.Int64
	progress Progress
	started  time.Time

	// condemned: packs a gc plan listed at the start of the push condemns;
	// chunks located only there count as unknown and are uploaded again.
	condemned map[chunk.ID]bool
}

func (r *Registry) newPusher(ctx context.Context, progress Progress) *pusher {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &pusher{
		r: r, ctx: ctx, cancel: cancel,
		free:       make(chan *batch, freeBatches),
		toClassify: make(chan *batch, freeBatches),
		toPack:     make(chan *batch, freeBatches),
		classified: make(chan struct{}),
		packDone:   make(chan struct{}),
		// Two packs in flight keep the uploads busy; more only holds memory.
		upSem:    make(chan struct{}, 2),
		pending:  make(map[chunk.ID]struct{}),
		progress: progress,
		started:  time.Now(),
	}
	for range freeBatches {
		p.free <- &batch{} // buf is made on first use: a mapped file needs none
	}
	go p.classifyLoop()
	go p.packLoop()
	return p
}

func (p *pusher) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel(err)
}

func (p *pusher) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// fileResult is what pushing one file yields.
type fileResult struct {
	recipe *manifest.Recipe
	key    chunk.ID // recipe.ContentKey(), hashed once for the digest and the recipe object
	digest string   // sha256 hex
	size   int64
	mode   os.FileMode
	params chunk.Params
	// knownRecipe is set instead of recipe for a file the store already
	// holds under its digest (a base image), which was not read again.
	knownRecipe chunk.ID
	// remembered: the digest came from the node index (the recipe's
	// content key), not from hashing the file again.
	remembered bool
}

// fileHash is the SHA-256 of one file being pushed.
//
// Hashing starts only at the first batch that holds a chunk the store
// lacks: content the store holds entirely (the same memory written again
// to a new file, as every VM save does) may be content the node hashed
// before, whose digest the index remembers under its recipe's content key.
// Then the file is never hashed: its chunks, hashed with BLAKE3 anyway,
// name the bytes. Started late, the hasher first reads the skipped prefix
// back from the file; a file that changes meanwhile is caught by its
// validator (see addFile).
type fileHash struct {
	h       hash.Hash
	f       *os.File
	regions []chunk.Region // the file's data; holes are not read back
	ch      chan *batch
	eof     chan struct{} // closed once the classifier has seen the whole file

	verified string // the digest, checked by the caller: never start

	started bool // whether batches go to ch; the classifier's alone
	done    chan struct{}
	err     error // of reading the prefix back; read after done
}

func newFileHash(f *os.File, regions []chunk.Region) *fileHash {
	return &fileHash{
		h: sha256.New(), f: f, regions: regions,
		ch: make(chan *batch, freeBatches), eof: make(chan struct{}), done: make(chan struct{}),
	}
}

// start begins hashing at file offset from, reading [0, from) back first.
func (fh *fileHash) start(from int64) {
	fh.started = true
	go func() {
		defer close(fh.done)
		if from > 0 {
			fh.err = fh.readBack(from)
		}
		for b := range fh.ch {
			if fh.err == nil {
				fh.err = chunk.Guard(func() error { hashBatch(fh.h, b); return nil })
			}
			b.refs.Done()
		}
	}()
}

// readBack hashes the first n bytes of the file, reading its data regions
// again and feeding zeros for the holes between them.
func (fh *fileHash) readBack(n int64) error {
	buf := make([]byte, 1<<20)
	var pos int64
	zeros := func(end int64) {
		writeZeros(fh.h, end-pos)
		pos = max(pos, end)
	}
	for _, r := range fh.regions {
		if r.Offset >= n {
			break
		}
		zeros(r.Offset)
		end := min(r.End(), n)
		if end <= pos {
			continue
		}
		if _, err := io.CopyBuffer(fh.h, io.NewSectionReader(fh.f, pos, end-pos), buf); err != nil {
			return fmt.Errorf("read back for SHA-256: %w", err)
		}
		pos = end
	}
	zeros(n)
	return nil
}

// addFile chunks path, queues its new chunks for packing and returns its
// recipe and SHA-256 digest. Holes of sparse files are not read. verified,
// when set, is the digest the caller already checked the file's content
// against (a spooled stream): the file is then not hashed.
func (p *pusher) addFile(path, verified string) (*fileResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("push %s: not a regular file", path)
	}
	size := fi.Size()
	regions, err := chunk.DataRegions(f, size)
	if err != nil {
		return nil, fmt.Errorf("push %s: find data regions: %w", path, err)
	}
	params := chunk.ParamsFor(fi.Name(), p.r.pol)
	sp, err := chunk.NewSplitter(f, size, regions, params)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	defer func() { _ = sp.Close() }()

	fh := newFileHash(f, regions)
	fh.verified = verified
	recipe := &manifest.Recipe{Extents: make([]manifest.Extent, 0, params.ExtentsHint(regions))}
	// split copies the chunks out of the splitter's window, which may be
	// the file's mapping: a file truncated meanwhile is an error, not a crash.
	err = chunk.Guard(func() error { return p.split(sp, recipe, fh) })
	<-fh.eof
	if fh.started {
		<-fh.done
	}
	if err == nil {
		err = p.failed()
	}
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	if err := recipe.Validate(); err != nil {
		return nil, fmt.Errorf("push %s: recipe: %w", path, err)
	}
	if recipe.Size != size {
		return nil, fmt.Errorf("push %s: file changed while it was read (%d bytes chunked, %d expected)", path, recipe.Size, size)
	}
	key := recipe.ContentKey()
	digest, remembered, err := p.fileDigest(fh, recipe, key, fi)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	atomic.AddInt64(&p.stats.Files, 1)
	atomic.AddInt64(&p.stats.RawBytes, size)
	return &fileResult{
		recipe: recipe, key: key, digest: digest, remembered: remembered,
		size: size, mode: fi.Mode().Perm(), params: params,
	}, nil
}

// fileDigest finishes the SHA-256 of a chunked file: the caller's verified
// digest if any, else from the hasher if it ran, else from the digest the
// node remembers for the recipe's content, else by reading the file again.
// Bytes read back must be the bytes chunked: the file's validator (size,
// mtime, inode) must not have changed since it was opened. A digest
// computed here is remembered.
func (p *pusher) fileDigest(fh *fileHash, recipe *manifest.Recipe, key chunk.ID, before os.FileInfo) (string, bool, error) {
	if fh.verified != "" {
		if err := p.r.rememberDigest(key, fh.verified); err != nil {
			return "", false, err
		}
		return fh.verified, false, nil
	}
	if !fh.started {
		d, ok, err := p.r.idx.KnownDigest(key)
		if err != nil {
			return "", false, err
		}
		if ok {
			return hex.EncodeToString(d[:]), true, nil
		}
		if err := fh.readBack(recipe.Size); err != nil {
			return "", false, err
		}
	} else if fh.err != nil {
		return "", false, fh.err
	}
	after, err := fh.f.Stat()
	if err != nil {
		return "", false, err
	}
	if index.ValidatorFor(after) != index.ValidatorFor(before) {
		return "", false, errors.New("file changed while it was read")
	}
	var d [index.DigestSize]byte
	fh.h.Sum(d[:0])
	if err := p.r.idx.RememberDigest(key, d); err != nil {
		return "", false, err
	}
	return hex.EncodeToString(d[:]), false, nil
}

var zeroPage [64 << 10]byte

func hashBatch(h hash.Hash, b *batch) {
	for _, it := range b.items {
		if it.zero {
			writeZeros(h, it.length)
		} else {
			h.Write(b.data[it.start : it.start+int(it.length)])
		}
	}
}

// writeZeros hashes n zero bytes (none for n <= 0).
func writeZeros(h hash.Hash, n int64) {
	for n > 0 {
		k := min(n, int64(len(zeroPage)))
		h.Write(zeroPage[:k])
		n -= k
	}
}

// split runs the splitter, filling batches for the classifier, and ends
// the file with an eof batch. On error the eof batch is still sent, so the
// file's hasher always ends.
//
// A window the splitter mapped becomes one batch that holds the mapping
// until the batch is reused (no copy: a re-push of content the store holds
// never needs the bytes again once hashed); the chunks of windows that
// were read are copied into batches of batchBytes.
func (p *pusher) split(sp *chunk.Splitter, recipe *manifest.Recipe, fh *fileHash) error {
	var b *batch
	var offset int64
	send := func() {
		if b != nil && len(b.items) > 0 {
			if b.win == nil {
				b.data = b.buf
			}
			b.file = fh
			p.toClassify <- b
			b = nil
		}
	}
	take := func() error {
		select {
		case b = <-p.free:
		case <-p.ctx.Done():
			return context.Cause(p.ctx)
		}
		b.reset(offset)
		return nil
	}
	defer func() {
		if b != nil {
			p.free <- b
		}
		p.toClassify <- &batch{eof: true, file: fh}
	}()
	for {
		cs, err := sp.NextBatch()
		if errors.Is(err, io.EOF) {
			send()
			return nil
		}
		if err != nil {
			return err
		}
		if w := sp.DetachWindow(); w != nil {
			send()
			if err := take(); err != nil {
				w.Release()
				return err
			}
			b.win, b.data = w, w.Data
			for _, c := range cs {
				p.appendChunk(recipe, b, c, &offset)
			}
			send()
			continue
		}
		for _, c := range cs {
			if b == nil {
				if err := take(); err != nil {
					return err
				}
				if b.buf == nil {
					b.buf = make([]byte, 0, batchBytes+256<<10)
				}
			}
			p.appendChunk(recipe, b, c, &offset)
			if len(b.buf) >= batchBytes || len(b.items) >= batchChunks {
				send()
			}
		}
	}
}

// appendChunk records c in the recipe and adds it to b: as a slice of
// b's window when b holds one, else copied into b.buf.
func (p *pusher) appendChunk(recipe *manifest.Recipe, b *batch, c chunk.Chunk, offset *int64) {
	it := item{zero: c.Zero, length: int64(c.Length), id: c.ID}
	switch {
	case c.Zero:
		recipe.AppendZero(uint64(c.Length))
	case b.win != nil:
		recipe.AppendData(c.ID, uint32(c.Length))
		it.start = int(c.Offset - b.win.Offset)
	default:
		recipe.AppendData(c.ID, uint32(c.Length))
		it.start = len(b.buf)
		b.buf = append(b.buf, c.Data...)
	}
	b.items = append(b.items, it)
	*offset += int64(c.Length)
}

// reset readies b for reuse once its previous users are done, releasing
// the window it held.
func (b *batch) reset(offset int64) {
	b.refs.Wait()
	b.win.Release()
	b.win = nil
	b.buf, b.data, b.items, b.offset = b.buf[:0], nil, b.items[:0], offset
}

// classifyLoop classifies each batch and hands it to its file's hasher
// (once hashing started) and to the packer. After a failure batches go
// straight back to the free list.
func (p *pusher) classifyLoop() {
	defer close(p.classified)
	for b := range p.toClassify {
		fh := b.file
		if b.eof {
			if fh.started {
				close(fh.ch)
			}
			close(fh.eof)
			continue
		}
		if p.ctx.Err() != nil {
			p.free <- b
			continue
		}
		lacking, err := p.classify(b)
		if err != nil {
			p.fail(err)
			p.free <- b
			continue
		}
		if lacking && !fh.started && fh.verified == "" {
			fh.start(b.offset)
		}
		if fh.started {
			b.refs.Add(2)
			fh.ch <- b
		} else {
			b.refs.Add(1)
		}
		p.toPack <- b
	}
}

// classify marks the chunks of b the store lacks and that no earlier batch
// of this push queued. A chunk located only in packs a gc plan condemns
// counts as lacking (see GC.md). It reports whether the store lacks any
// chunk of b (queued by this push or not).
func (p *pusher) classify(b *batch) (lacking bool, err error) {
	var ids []chunk.ID
	var where []int
	for i, it := range b.items {
		if it.zero {
			continue
		}
		ids = append(ids, it.id)
		where = append(where, i)
	}
	atomic.AddInt64(&p.stats.Chunks, int64(len(ids)))
	known := make([]bool, len(ids))
	mark := func(i int, _ index.Location, ok bool) { known[i] = ok }
	if len(p.condemned) > 0 {
		err = p.r.idx.LookupManyAccept(ids, func(pack chunk.ID) bool { return !p.condemned[pack] }, mark)
	} else {
		err = p.r.idx.LookupMany(ids, mark)
	}
	if err != nil {
		return false, fmt.Errorf("look up chunks: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, i := range where {
		it := &b.items[i]
		atomic.AddInt64(&p.stats.DataBytes, it.length)
		if known[k] {
			atomic.AddInt64(&p.stats.ReusedBytes, it.length)
			continue
		}
		lacking = true
		if _, queued := p.pending[it.id]; queued {
			atomic.AddInt64(&p.stats.ReusedBytes, it.length)
			continue
		}
		p.pending[it.id] = struct{}{}
		it.isNew = true
		atomic.AddInt64(&p.stats.NewChunks, 1)
		atomic.AddInt64(&p.stats.NewBytes, it.length)
	}
	return lacking, nil
}

// packLoop adds new chunks to packs and hands full packs to uploaders.
func (p *pusher) packLoop() {
	defer close(p.packDone)
	var sp *packSpool
	for b := range p.toPack {
		if p.ctx.Err() == nil {
			// The bytes may be the file's mapping (see split).
			if err := chunk.Guard(func() error { return p.packBatch(&sp, b) }); err != nil {
				p.fail(err)
				if sp != nil {
					sp.close() // it may hold part of a chunk: never upload it
					sp = nil
				}
			}
		}
		b.refs.Done()
		p.free <- b
		p.report()
	}
	if sp != nil {
		p.upload(sp)
	}
}

// packBatch adds b's new chunks to *sp, starting a pack when there is
// none and uploading each full one.
func (p *pusher) packBatch(sp **packSpool, b *batch) error {
	for _, it := range b.items {
		if !it.isNew {
			continue
		}
		if *sp == nil {
			s, err := p.r.newPackSpool()
			if err != nil {
				return fmt.Errorf("new pack: %w", err)
			}
			*sp = s
		}
		if err := (*sp).w.Add(it.id, b.data[it.start:it.start+int(it.length)]); err != nil {
			return fmt.Errorf("pack chunk %s: %w", it.id, err)
		}
		if (*sp).w.Size() >= p.r.opts.packSize {
			p.upload(*sp)
			*sp = nil
		}
	}
	return nil
}

// upload finishes a pack and writes it to the store in the background,
// then records it in the node index.
func (p *pusher) upload(sp *packSpool) {
	id, size, entries, err := sp.finish()
	if err != nil {
		sp.close()
		p.fail(fmt.Errorf("finish pack: %w", err))
		return
	}
	select {
	case p.upSem <- struct{}{}:
	case <-p.ctx.Done():
		sp.close()
		return
	}
	p.uploads.Add(1)
	go func() {
		defer p.uploads.Done()
		defer func() { <-p.upSem }()
		defer sp.close()
		if err := p.r.putImmutableBody(p.ctx, packKey(id), sp.f, size); err != nil {
			p.fail(fmt.Errorf("upload pack %s: %w", id, err))
			return
		}
		p.uploaded.Add(size)
		pe := make([]index.PackEntry, len(entries))
		for i, e := range entries {
			pe[i] = index.PackEntry{ID: e.ID, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length}
		}
		rec := index.PackRecord{Pack: id, Size: size, Entries: pe}
		// The node index learns of the pack only after the index object
		// that tells every other node is stored: a push that dies between
		// the two must not leave this node deduplicating against chunks no
		// other node can find.
		n, err := p.r.writeIndexObject(p.ctx, []index.PackRecord{rec})
		if err != nil {
			p.fail(err)
			return
		}
		p.uploaded.Add(n)
		p.mu.Lock()
		for _, e := range entries {
			delete(p.pending, e.ID)
		}
		p.stats.Packs++
		p.mu.Unlock()
	}()
}

// writeIndexObject stores an index object naming packs (already uploaded)
// and ingests it into the node index. It returns the bytes sent.
func (r *Registry) writeIndexObject(ctx context.Context, packs []index.PackRecord) (int64, error) {
	data, err := index.EncodeIndexObject(packs)
	if err != nil {
		return 0, fmt.Errorf("encode index object: %w", err)
	}
	name := fmt.Sprintf("%s%016x-%s", indexObjectDir, time.Now().UnixNano(), packs[0].Pack.String()[:24])
	// The name is ours alone: a create-only conflict can only be our own
	// earlier attempt whose response was lost.
	if err := r.putImmutable(ctx, name, data); err != nil {
		return 0, fmt.Errorf("write index object: %w", err)
	}
	if err := r.idx.Ingest(name, packs); err != nil {
		return 0, fmt.Errorf("index %s: %w", name, err)
	}
	return int64(len(data)), nil
}

// finish flushes the last pack and waits for every upload (each pack
// uploads its own index object).
func (p *pusher) finish() error {
	close(p.toClassify)
	<-p.classified
	close(p.toPack)
	<-p.packDone
	// Every batch is back in the free list: release the windows they hold.
	for range len(p.free) {
		b := <-p.free
		b.reset(0)
		p.free <- b
	}
	p.uploads.Wait()
	if err := p.failed(); err != nil {
		return err
	}
	return p.ctx.Err()
}

// abort stops the pipeline after an error in the caller.
func (p *pusher) abort(err error) {
	p.fail(err)
	_ = p.finish()
}

func (p *pusher) report() {
	if p.progress == nil {
		return
	}
	p.progress(p.snapshot())
}

func (p *pusher) snapshot() TransferStats {
	s := TransferStats{
		Files:       atomic.LoadInt64(&p.stats.Files),
		RawBytes:    atomic.LoadInt64(&p.stats.RawBytes),
		DataBytes:   atomic.LoadInt64(&p.stats.DataBytes),
		Chunks:      atomic.LoadInt64(&p.stats.Chunks),
		NewChunks:   atomic.LoadInt64(&p.stats.NewChunks),
		NewBytes:    atomic.LoadInt64(&p.stats.NewBytes),
		ReusedBytes: atomic.LoadInt64(&p.stats.ReusedBytes),
	}
	s.UploadedBytes = p.uploaded.Load()
	p.mu.Lock()
	s.Packs = p.stats.Packs
	p.mu.Unlock()
	s.Seconds = time.Since(p.started).Seconds()
	return s
}

// putImmutable writes a content-addressed object create-only. An existing
// object with that name holds the same bytes, so it counts as success.
func (r *Registry) putImmutable(ctx context.Context, key string, data []byte) error {
	return r.putImmutableBody(ctx, key, bytes.NewReader(data), int64(len(data)))
}

// putImmutableBody is putImmutable for size bytes of body (a spooled pack,
// which the folder store links into place).
func (r *Registry) putImmutableBody(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	_, err := r.store.Put(ctx, key, body, size, objectstore.PutOptions{IfNoneMatch: true})
	if errors.Is(err, objectstore.ErrPreconditionFailed) {
		return nil
	}
	return err
}

// packSpool is a pack being written to an anonymous spool file in the
// cache dir (objectstore.Spool): a push holds a few hundred KiB per pack in
// flight instead of the pack (3 x 17 MiB before), and a killed push leaves
// no file behind. The page cache keeps the bytes for the upload that
// follows; the folder store takes the file itself, by a link, when it is
// on the same filesystem, and then the bytes are written around the page
// cache (r.directSpools).
type packSpool struct {
	w  *pack.Writer
	f  *objectstore.Spool
	bw *objectstore.SpoolWriter
}

// newPackSpool starts a pack like newPackWriter, streamed to a spool file.
func (r *Registry) newPackSpool() (*packSpool, error) {
	f, err := objectstore.NewSpool(r.spoolDir)
	if err != nil {
		return nil, fmt.Errorf("spool pack: %w", err)
	}
	sp := &packSpool{f: f}
	if sp.bw, err = f.Writer(r.directSpools); err != nil {
		sp.close()
		return nil, fmt.Errorf("spool pack: %w", err)
	}
	if sp.w, err = r.newPackWriter(pack.WithOutput(sp.bw)); err != nil {
		sp.close()
		return nil, err
	}
	return sp, nil
}

// finish completes the pack and returns its id and size; f then holds it.
func (sp *packSpool) finish() (chunk.ID, int64, []pack.Entry, error) {
	_, entries, err := sp.w.Finish()
	if err != nil {
		return chunk.ID{}, 0, nil, err
	}
	if err := sp.bw.Close(); err != nil {
		return chunk.ID{}, 0, nil, fmt.Errorf("spool pack: %w", err)
	}
	return sp.w.ID(), sp.w.Size(), entries, nil
}

func (sp *packSpool) close() { _ = sp.f.Close() }
