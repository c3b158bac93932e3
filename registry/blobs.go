package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/puller"
)

// blobDescriptor maps a blob's SHA-256 digest to the recipe of its content.
type blobDescriptor struct {
	SchemaVersion int    `json:"schemaVersion"`
	Digest        string `json:"digest"`
	Size          int64  `json:"size"`
	Recipe        string `json:"recipe"`
	Chunker       string `json:"chunker,omitempty"`
}

// PushBlob uploads a file as a content-addressable blob and returns its
// SHA-256 hex digest and size. Only chunks the store lacks are uploaded.
func (r *Registry) PushBlob(ctx context.Context, filePath string) (string, int64, error) {
	res, _, err := r.PushBlobStats(ctx, filePath, nil)
	if err != nil {
		return "", 0, err
	}
	return res.digest, res.size, nil
}

// PushBlobStats is PushBlob reporting progress and what was transferred.
func (r *Registry) PushBlobStats(ctx context.Context, filePath string, progress Progress) (*fileResult, TransferStats, error) {
	return r.pushBlob(ctx, filePath, progress, "")
}

// pushBlob is PushBlobStats; verified, when set, is the SHA-256 the file's
// content was already checked against, which the push then does not
// compute again.
func (r *Registry) pushBlob(ctx context.Context, filePath string, progress Progress, verified string) (*fileResult, TransferStats, error) {
	if err := r.init(ctx); err != nil {
		return nil, TransferStats{}, err
	}
	guard, err := r.startPush(ctx)
	if err != nil {
		return nil, TransferStats{}, err
	}
	before := r.store.Stats()
	p := r.newPusher(ctx, progress)
	p.condemned = guard.condemned
	res, err := p.addFile(filePath, verified)
	if err != nil {
		p.abort(err)
		return nil, TransferStats{}, err
	}
	if err := p.finish(); err != nil {
		return nil, TransferStats{}, fmt.Errorf("push blob %s: %w", filePath, err)
	}
	id, err := r.storeRecipe(ctx, res.recipe, res.key, nil)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push blob %s: %w", filePath, err)
	}
	// The gc commit check; the descriptor is this push's commit point.
	deadline, err := r.commitCheck(ctx, guard, []chunk.ID{id}, []string{res.digest}, map[chunk.ID]*manifest.Recipe{id: res.recipe})
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push blob %s: %w", filePath, err)
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := r.writeDescriptor(wctx, res, id); err != nil {
		return nil, TransferStats{}, fmt.Errorf("push blob %s: %w", filePath, gcDeadline(wctx, err))
	}
	st := p.snapshot()
	r.fillStoreStats(&st, before)
	return res, st, nil
}

func (r *Registry) writeDescriptor(ctx context.Context, res *fileResult, recipe chunk.ID) error {
	desc, err := json.Marshal(blobDescriptor{
		SchemaVersion: 1, Digest: res.digest, Size: res.size,
		Recipe: recipe.String(), Chunker: res.params.String(),
	})
	if err != nil {
		return err
	}
	if _, err := r.store.Stat(ctx, descriptorKey(res.digest)); err == nil {
		return nil
	}
	if err := r.putImmutable(ctx, descriptorKey(res.digest), desc); err != nil {
		return fmt.Errorf("write blob descriptor %s: %w", res.digest, err)
	}
	return nil
}

// fillStoreStats sets the byte and request counts from the client's
// counters, so they are what really crossed the wire.
func (r *Registry) fillStoreStats(st *TransferStats, before objectstore.Stats) {
	after := r.store.Stats()
	st.UploadedBytes = after.BytesUp - before.BytesUp
	st.DownloadedBytes = after.BytesDown - before.BytesDown
	st.Requests = (after.PutRequests + after.GetRequests + after.OtherRequests) -
		(before.PutRequests + before.GetRequests + before.OtherRequests)
}

// PushBlobFromStream uploads a blob from a stream whose digest and size the
// caller computed. The stream is spooled to a temporary file and checked
// first: with a wrong digest or size nothing is stored under that digest.
func (r *Registry) PushBlobFromStream(ctx context.Context, digest string, body io.Reader, size int64) error {
	digest, err := validateDigest(digest)
	if err != nil {
		return fmt.Errorf("push blob stream: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("push blob %s: %w: negative size %d", digest, ErrSizeMismatch, size)
	}
	if err := r.init(ctx); err != nil {
		return err
	}
	dir := filepath.Dir(r.idxPath())
	tmp, err := os.CreateTemp(dir, "spool-*")
	if err != nil {
		return fmt.Errorf("push blob %s: spool: %w", digest, err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	h := sha256.New()
	// Read one byte past size so a longer stream is caught, not truncated.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, size+1))
	if err != nil {
		return fmt.Errorf("push blob %s: read stream: %w", digest, err)
	}
	if n != size {
		return fmt.Errorf("push blob %s: %w: stream has %s bytes, want %d", digest, ErrSizeMismatch, streamLen(n, size), size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("push blob %s: %w: stream hashes to %s", digest, ErrDigestMismatch, got)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("push blob %s: spool: %w", digest, err)
	}
	// The spool is ours and was hashed on its way in: the push does not
	// hash it a second time.
	_, _, err = r.pushBlob(ctx, tmp.Name(), nil, digest)
	return err
}

func streamLen(n, size int64) string {
	if n > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(n)
}

func (r *Registry) idxPath() string { return r.idx.Path() }

// readDescriptor returns the chunked descriptor of digest, or nil when the
// store holds the blob only in Epoch v0.1.x's whole-blob form (legacy true),
// or ErrBlobNotFound.
func (r *Registry) readDescriptor(ctx context.Context, digest string) (*blobDescriptor, bool, int64, error) {
	data, _, err := r.store.GetBytes(ctx, descriptorKey(digest), maxDescriptor)
	if err == nil {
		var d blobDescriptor
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, false, 0, fmt.Errorf("%w: blob descriptor %s: %w", ErrCorruptStore, digest, err)
		}
		if d.Digest != digest || d.Size < 0 {
			return nil, false, 0, fmt.Errorf("%w: blob descriptor %s names digest %q size %d", ErrCorruptStore, digest, d.Digest, d.Size)
		}
		if _, err := chunk.ParseID(d.Recipe); err != nil {
			return nil, false, 0, fmt.Errorf("%w: blob descriptor %s: %w", ErrCorruptStore, digest, err)
		}
		return &d, false, d.Size, nil
	}
	if !errors.Is(err, objectstore.ErrNotFound) {
		return nil, false, 0, fmt.Errorf("read blob descriptor %s: %w", digest, err)
	}
	oi, err := r.store.Stat(ctx, legacyBlobKey(digest))
	if err == nil {
		return nil, true, oi.Size, nil
	}
	if errors.Is(err, objectstore.ErrNotFound) {
		return nil, false, 0, fmt.Errorf("%w: %s", ErrBlobNotFound, digest)
	}
	return nil, false, 0, fmt.Errorf("stat blob %s: %w", digest, err)
}

// BlobExists checks if a blob exists in the registry.
func (r *Registry) BlobExists(ctx context.Context, digest string) (bool, error) {
	digest, err := validateDigest(digest)
	if err != nil {
		return false, err
	}
	_, _, _, err = r.readDescriptor(ctx, digest)
	if errors.Is(err, ErrBlobNotFound) {
		return false, nil
	}
	return err == nil, err
}

// BlobSize returns the size of a blob.
func (r *Registry) BlobSize(ctx context.Context, digest string) (int64, error) {
	digest, err := validateDigest(digest)
	if err != nil {
		return 0, err
	}
	_, _, size, err := r.readDescriptor(ctx, digest)
	return size, err
}

// DeleteBlob removes a blob's name from the store. Its chunks stay until
// garbage collection finds them unreferenced, since other blobs may share
// them.
func (r *Registry) DeleteBlob(ctx context.Context, digest string) error {
	digest, err := validateDigest(digest)
	if err != nil {
		return err
	}
	if err := r.store.Delete(ctx, descriptorKey(digest)); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	if err := r.store.Delete(ctx, legacyBlobKey(digest)); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}

// PullBlob downloads a blob to a local file. The file appears at destPath
// only complete and verified (written to a temporary name beside it,
// synced, renamed); chunks already in local files the node index knows are
// copied instead of downloaded.
func (r *Registry) PullBlob(ctx context.Context, digest, destPath string) error {
	_, err := r.PullBlobStats(ctx, digest, destPath, nil)
	return err
}

// PullBlobStats is PullBlob reporting progress and what was transferred.
func (r *Registry) PullBlobStats(ctx context.Context, digest, destPath string, progress Progress) (TransferStats, error) {
	start := time.Now()
	digest, err := validateDigest(digest)
	if err != nil {
		return TransferStats{}, fmt.Errorf("pull blob: %w", err)
	}
	if err := r.init(ctx); err != nil {
		return TransferStats{}, err
	}
	before := r.store.Stats()
	desc, legacy, size, err := r.readDescriptor(ctx, digest)
	if err != nil {
		return TransferStats{}, fmt.Errorf("pull blob %s: %w", digest, err)
	}
	tmp := tempName(destPath)
	installed := false
	defer func() {
		// Once installed, tmp names the file destPath held before (an
		// exchange), which replaceFile removes in the background: freeing
		// it here took 2.5-3 s for 512 MiB on this VM's discard-mounted
		// ext4, longer than the pull.
		if !installed {
			_ = os.Remove(tmp)
		}
	}()
	var st TransferStats
	if legacy {
		if err := r.pullLegacy(ctx, digest, size, tmp); err != nil {
			return st, fmt.Errorf("pull blob %s: %w", digest, err)
		}
		st = TransferStats{Files: 1, RawBytes: size, DataBytes: size, NewBytes: size}
	} else {
		if st, err = r.pullChunked(ctx, desc, tmp, destPath, progress, start); err != nil {
			return st, fmt.Errorf("pull blob %s: %w", digest, err)
		}
	}
	if err := r.replaceFile(tmp, destPath); err != nil {
		return st, fmt.Errorf("pull blob %s: %w", digest, err)
	}
	installed = true
	if err := syncDir(filepath.Dir(destPath)); err != nil {
		return st, fmt.Errorf("pull blob %s: %w", digest, err)
	}
	r.fillStoreStats(&st, before)
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// pullChunked writes the blob desc describes to path, verified, and has
// its chunks recorded as held by dest, where the caller renames it.
func (r *Registry) pullChunked(ctx context.Context, desc *blobDescriptor, path, dest string, progress Progress, start time.Time) (TransferStats, error) {
	rid, err := chunk.ParseID(desc.Recipe)
	if err != nil {
		return TransferStats{}, err
	}
	if err := r.syncIndex(ctx); err != nil {
		return TransferStats{}, err
	}
	record, err := filepath.Abs(dest)
	if err != nil {
		return TransferStats{}, err
	}
	ps, err := r.fetch(ctx, func() ([]puller.File, error) {
		base, err := r.loadRecipe(ctx, rid)
		if err != nil {
			return nil, err
		}
		if base.recipe.Size != desc.Size {
			return nil, fmt.Errorf("%w: recipe size %d, descriptor %d", ErrCorruptStore, base.recipe.Size, desc.Size)
		}
		return []puller.File{{Path: path, Recipe: base.recipe, Digest: desc.Digest, Mode: 0o644, Record: record}}, nil
	}, progress, start)
	if err != nil {
		return TransferStats{}, err
	}
	return fromPullStats(ps), nil
}

// rememberLocal records where the chunks of a file now on disk sit, so a
// later pull can copy them instead of downloading. Failure costs only a
// later download, so it is not an error of the push or pull.
func (r *Registry) rememberLocal(path string, recipe *manifest.Recipe) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	// Straight from the recipe: a list of a 4 GiB memory file's chunks
	// was 35 MB more at the end of each push and pull.
	chunks := func(yield func(index.LocalChunk) bool) {
		var off int64
		for _, e := range recipe.Extents {
			if !e.Zero && !yield(index.LocalChunk{ID: e.ID, Offset: off, Length: uint32(e.Length)}) {
				return
			}
			off += int64(e.Length)
		}
	}
	_ = r.idx.AddLocalFile(abs, index.ValidatorFor(fi), chunks)
}

func (r *Registry) pullLegacy(ctx context.Context, digest string, size int64, tmp string) error {
	rc, err := r.store.Get(ctx, legacyBlobKey(digest), 0, -1)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, size+1))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrSizeMismatch, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("%w: content hashes to %s", ErrDigestMismatch, got)
	}
	return f.Sync()
}

// StreamBlob returns a reader of a blob's verified content and its size.
// The content is assembled in a temporary file first, so the reader only
// ever returns verified bytes. Caller must close the reader.
func (r *Registry) StreamBlob(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	digest, err := validateDigest(digest)
	if err != nil {
		return nil, 0, err
	}
	if err := r.init(ctx); err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(r.idxPath()), "stream-*")
	if err != nil {
		return nil, 0, fmt.Errorf("stream blob %s: %w", digest, err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	path := filepath.Join(dir, "blob")
	if err := r.PullBlob(ctx, digest, path); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("stream blob %s: %w", digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("stream blob %s: %w", digest, err)
	}
	// The open descriptor keeps the data after the directory is removed.
	return f, fi.Size(), nil
}

// packReader adapts the store to the pull engine's narrow interface.
func (r *Registry) packReader() puller.PackReader { return storePacks{r.store} }

type storePacks struct{ store *objectstore.Client }

func (s storePacks) ReadPack(ctx context.Context, id chunk.ID, offset, length int64) (io.ReadCloser, error) {
	return s.store.Get(ctx, packKey(id), offset, length)
}

func progressAdapter(p Progress, start time.Time) func(puller.Stats) {
	if p == nil {
		return nil
	}
	return func(s puller.Stats) {
		st := fromPullStats(s)
		st.Seconds = time.Since(start).Seconds()
		p(st)
	}
}

func fromPullStats(s puller.Stats) TransferStats {
	return TransferStats{
		Files:           s.Files,
		RawBytes:        s.RawBytes,
		Chunks:          s.Chunks,
		NewChunks:       s.RemoteChunks,
		ReusedBytes:     s.ReusedBytes,
		ClonedBytes:     s.ClonedBytes,
		DownloadedBytes: s.DownloadedBytes,
		Requests:        s.Requests,
	}
}

// tempName returns a unique temporary name beside path.
func tempName(path string) string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".epoch-tmp-"+hex.EncodeToString(rnd[:]))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fetch runs the pull engine over the files build returns. A pack can
// vanish under a pull:
// gc deletes a pack once its live chunks sit in rewritten packs, and this
// node's index learns that only at its next sync. So a pack that is not
// found costs one re-sync (tombstones first, then the new index objects)
// and one resumed run, which keeps every chunk already written. A second
// not-found is an error: the store itself lacks the chunk.
func (r *Registry) fetch(ctx context.Context, build func() ([]puller.File, error), progress Progress, start time.Time) (_ puller.Stats, err error) {
	// A pull copies from the files earlier pulls recorded: wait for their
	// records, which run off the critical path of the pulls that made them.
	r.records.Wait()
	eng := puller.New(r.idx, r.packReader(), &puller.Options{
		Concurrency: r.opts.concurrency,
		Defer:       func(record func()) { r.records.Go(record) },
	})
	files, err := build()
	if err != nil {
		return puller.Stats{}, err
	}
	// Keys now, while the recipes are at hand; a retry builds the same.
	keys := contentKeys(files)
	defer func() {
		if err == nil {
			r.rememberDigests(keys)
		}
	}()
	// files is not kept: the engine lets the recipes go once it has
	// planned (see puller.File.Record); a retry builds them again.
	first, err := eng.Fetch(ctx, files, progressAdapter(progress, start))
	if err == nil || !errors.Is(err, objectstore.ErrNotFound) || ctx.Err() != nil {
		return first, err
	}
	if serr := r.syncIndex(ctx); serr != nil {
		return first, errors.Join(err, serr)
	}
	resumed, berr := build()
	if berr != nil {
		return first, errors.Join(err, berr)
	}
	for i := range resumed {
		resumed[i].Resume = true
	}
	st, err := eng.Fetch(ctx, resumed, progressAdapter(progress, start))
	st.DownloadedBytes += first.DownloadedBytes
	st.Requests += first.Requests
	return st, err
}

// contentDigest pairs a recipe's content key with the SHA-256 of its bytes.
type contentDigest struct {
	key    chunk.ID
	digest string
}

func contentKeys(files []puller.File) []contentDigest {
	keys := make([]contentDigest, 0, len(files))
	for _, f := range files {
		if f.Recipe != nil {
			keys = append(keys, contentDigest{f.Recipe.ContentKey(), f.Digest})
		}
	}
	return keys
}

// rememberDigests records the digests a pull verified for its files'
// content, so a push of that content from another file need not hash it
// (see fileHash). Failure costs only that hashing later.
func (r *Registry) rememberDigests(keys []contentDigest) {
	for _, k := range keys {
		_ = r.rememberDigest(k.key, k.digest)
	}
}

// rememberDigest records digest (SHA-256 hex) for the content key.
func (r *Registry) rememberDigest(key chunk.ID, digest string) error {
	var d [index.DigestSize]byte
	if n, err := hex.Decode(d[:], []byte(digest)); err != nil || n != len(d) {
		return fmt.Errorf("digest %q: not SHA-256 hex", digest)
	}
	return r.idx.RememberDigest(key, d)
}
