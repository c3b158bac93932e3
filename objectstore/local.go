package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// localTmpPrefix starts the name of a file being written; List skips
	// it and keys may not use it.
	localTmpPrefix = ".tmp-"
	// localLockPrefix starts the name of a per-key lock file for If-Match
	// writes.
	localLockPrefix = ".lock-"
)

// localBackend stores each key as a file under root. Writes are atomic
// (temp file, fsync, rename, fsync dir); conditional writes are atomic
// across processes sharing the folder: create-only by link(2), which fails
// when the name exists, and If-Match under an flock(2) on a per-key lock
// file.
//
// The ETag is "<inode>-<size>-<mtime ns>" in hex. Every write creates a new
// file (new inode while the old one is alive) and stamps it with the full
// nanosecond wall clock, because the kernel's own timestamps are coarse
// (a jiffy) and a freed inode number can be reused by the next write.
type localBackend struct {
	root string
}

var _ Backend = (*localBackend)(nil)

// NewLocalBackend returns the bare local folder backend for dir (created if
// missing), without retries or counters; most callers want NewLocal.
func NewLocalBackend(dir string) (Backend, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty local store directory", ErrConfig)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store %s: %w", abs, err)
	}
	return &localBackend{root: abs}, nil
}

func (l *localBackend) String() string { return "file://" + l.root }

func (l *localBackend) describe(prefix string) string {
	return "file://" + filepath.Join(l.root, filepath.FromSlash(prefix))
}

// path maps a key to its file, refusing the names the backend reserves.
func (l *localBackend) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(seg, localTmpPrefix) || strings.HasPrefix(seg, localLockPrefix) {
			return "", fmt.Errorf("%w: %q: names starting with %q or %q are reserved by the local store",
				ErrInvalidKey, key, localTmpPrefix, localLockPrefix)
		}
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

func localETag(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return strconv.FormatUint(ino, 16) + "-" + strconv.FormatInt(fi.Size(), 16) + "-" +
		strconv.FormatInt(fi.ModTime().UnixNano(), 16)
}

func localInfo(key string, fi fs.FileInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: fi.Size(), ETag: localETag(fi), ModTime: fi.ModTime()}
}

// localErr maps filesystem errors to the package's sentinels and marks the
// rest permanent: a full or read-only disk does not heal within a backoff.
func localErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return Permanent(err)
}

func (l *localBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error) {
	final, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ObjectInfo{}, Permanent(err)
	}
	var (
		tmp    string
		fi     fs.FileInfo
		linked bool
	)
	if sp, ok := body.(*Spool); ok {
		if tmp, fi, linked, err = l.linkTemp(ctx, dir, filepath.Base(final), sp, size); err != nil {
			return ObjectInfo{}, err
		}
		body = sp.File // copied in the kernel when it cannot be linked
	}
	if !linked {
		if tmp, fi, err = l.writeTemp(ctx, dir, filepath.Base(final), body, size); err != nil {
			return ObjectInfo{}, err
		}
	}
	defer func() { _ = os.Remove(tmp) }() // fails harmlessly once renamed

	switch {
	case opts.IfNoneMatch:
		// link(2) creates the name only if it does not exist, atomically
		// even across processes and NFS clients; rename would replace.
		if err := os.Link(tmp, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return ObjectInfo{}, fmt.Errorf("%w: %s exists", ErrPreconditionFailed, key)
			}
			return ObjectInfo{}, Permanent(err)
		}
	case opts.IfMatch != "":
		if err := l.replaceIfMatch(ctx, tmp, final, key, opts.IfMatch); err != nil {
			return ObjectInfo{}, err
		}
	default:
		if err := os.Rename(tmp, final); err != nil {
			return ObjectInfo{}, localErr(err)
		}
	}
	if err := syncDir(dir); err != nil {
		return ObjectInfo{}, Permanent(err)
	}
	// Describe the file we published, not whatever final names by now:
	// rename and link keep inode, size and mtime, and another writer may
	// already have replaced it.
	return localInfo(key, fi), nil
}

// takesSpools: linkTemp links spools made on the store's filesystem.
func (l *localBackend) takesSpools(dir string) bool {
	return sameFilesystem(dir, l.root)
}

// linkTemp makes a spool the temp file of a write without copying a byte:
// it links the file under a temp name in dir, stamps its mtime and fsyncs
// it, as writeTemp would have its copy. linked is false, with no error,
// when the file cannot be linked there (another filesystem, no /proc, not
// Linux): the caller copies it then.
func (l *localBackend) linkTemp(ctx context.Context, dir, base string, sp *Spool, size int64) (name string, fi fs.FileInfo, linked bool, err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, false, err
	}
	st, err := sp.Stat()
	if err != nil {
		return "", nil, false, Permanent(err)
	}
	if st.Size() != size {
		return "", nil, false, Permanent(fmt.Errorf("body has %d bytes, want %d", st.Size(), size))
	}
	name = filepath.Join(dir, localTmpPrefix+base+"-"+strconv.FormatUint(rand.Uint64(), 36))
	if linkFile(sp.File, name) != nil {
		return "", nil, false, nil
	}
	now := time.Now()
	if err = os.Chtimes(name, now, now); err == nil {
		err = sp.Sync()
	}
	if err == nil {
		fi, err = os.Lstat(name)
	}
	if err != nil {
		_ = os.Remove(name)
		return "", nil, false, Permanent(err)
	}
	return name, fi, true, nil
}

// writeTemp copies exactly size bytes of body into a new temp file in dir,
// stamps its mtime and fsyncs it.
func (l *localBackend) writeTemp(ctx context.Context, dir, base string, body io.Reader, size int64) (string, fs.FileInfo, error) {
	f, err := os.CreateTemp(dir, localTmpPrefix+base+"-*")
	if err != nil {
		return "", nil, Permanent(err)
	}
	name := f.Name()
	fail := func(err error) (string, fs.FileInfo, error) {
		_ = f.Close()
		_ = os.Remove(name)
		return "", nil, err
	}
	var src io.Reader = &ctxReader{ctx: ctx, r: io.LimitReader(body, size+1)}
	if bf, ok := body.(*os.File); ok {
		// File to file: io.Copy then lets the kernel copy (copy_file_range)
		// instead of reading into and writing from user memory. It cannot
		// be cancelled midway, which a spooled pack does not need.
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		src = io.LimitReader(bf, size+1)
	}
	n, err := io.Copy(f, src)
	switch {
	case err != nil:
		return fail(err)
	case n != size:
		return fail(Permanent(fmt.Errorf("body has %d bytes, want %d", n, size)))
	}
	// Stamp before the fsync so the timestamp is durable with the data.
	now := time.Now()
	if err := os.Chtimes(name, now, now); err != nil {
		return fail(Permanent(err))
	}
	if err := f.Sync(); err != nil {
		return fail(Permanent(err))
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(Permanent(err))
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", nil, Permanent(err)
	}
	return name, fi, nil
}

// replaceIfMatch renames tmp over final while final's ETag is etag,
// holding the key's lock so no other If-Match writer or Delete interleaves.
func (l *localBackend) replaceIfMatch(ctx context.Context, tmp, final, key, etag string) error {
	unlock, err := lockKey(ctx, final)
	if err != nil {
		return err
	}
	defer unlock()
	fi, err := os.Stat(final)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist", ErrPreconditionFailed, key)
	case err != nil:
		return localErr(err)
	case localETag(fi) != etag:
		return fmt.Errorf("%w: %s has changed", ErrPreconditionFailed, key)
	}
	if err := os.Rename(tmp, final); err != nil {
		return localErr(err)
	}
	return nil
}

// lockPath is the lock file guarding the key stored at final.
func lockPath(final string) string {
	return filepath.Join(filepath.Dir(final), localLockPrefix+filepath.Base(final))
}

// lockKey takes the exclusive flock of final's lock file. Delete removes
// lock files, so after locking it checks that the name still refers to the
// locked inode; if not, a deleter got in between and it locks again.
func lockKey(ctx context.Context, final string) (func(), error) {
	name := lockPath(final)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, localErr(err)
		}
		if err := flockCtx(ctx, f); err != nil {
			_ = f.Close()
			return nil, err
		}
		held, err1 := f.Stat()
		onDisk, err2 := os.Stat(name)
		if err1 == nil && err2 == nil && os.SameFile(held, onDisk) {
			return func() { _ = f.Close() }, nil // closing releases the flock
		}
		_ = f.Close()
	}
}

// flockCtx waits for an exclusive flock, polling with LOCK_NB so that ctx
// can cut the wait short.
func flockCtx(ctx context.Context, f *os.File) error {
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return Permanent(fmt.Errorf("lock %s: %w", f.Name(), err))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func (l *localBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, localErr(err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, localErr(err)
	}
	if fi.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s is a directory", ErrNotFound, key)
	}
	size := fi.Size()
	if offset > size || (length >= 0 && offset+length > size) {
		_ = f.Close()
		return nil, fmt.Errorf("%w: offset %d length %d, object has %d bytes", ErrInvalidRange, offset, length, size)
	}
	if length < 0 {
		length = size - offset
	}
	// The open file is the version read, even if the key is replaced
	// meanwhile, so its ETag goes with the reader.
	return &infoReadCloser{
		ReadCloser: &sectionReadCloser{Reader: io.NewSectionReader(f, offset, length), f: f},
		info:       localInfo(key, fi),
	}, nil
}

type sectionReadCloser struct {
	io.Reader
	f *os.File
}

func (s *sectionReadCloser) Close() error { return s.f.Close() }

func (l *localBackend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	name, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(name)
	if err != nil {
		return ObjectInfo{}, localErr(err)
	}
	if fi.IsDir() {
		return ObjectInfo{}, fmt.Errorf("%w: %s is a directory", ErrNotFound, key)
	}
	return localInfo(key, fi), nil
}

// Delete removes the key and its lock file. It holds the lock while doing
// so, which lets a concurrent If-Match writer notice the removal (see
// lockKey). Empty directories stay: removing them would race with a Put
// creating a file in them.
func (l *localBackend) Delete(ctx context.Context, key string) error {
	name, err := l.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Lstat(lockPath(name)); err == nil {
		unlock, err := lockKey(ctx, name)
		if err != nil {
			return err
		}
		defer unlock()
		defer func() { _ = os.Remove(lockPath(name)) }() // while still locked: see lockKey
	}
	if err := os.Remove(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		if fi, serr := os.Lstat(name); serr == nil && fi.IsDir() {
			return nil // a prefix of other keys, not an object
		}
		return Permanent(err)
	}
	if err := syncDir(filepath.Dir(name)); err != nil {
		return Permanent(err)
	}
	return nil
}

// List walks the directories that can hold keys under prefix. It visits
// the entries of each directory sorted as keys sort (a directory "a" as
// "a/"), so keys come out in lexical order without collecting them first.
func (l *localBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	dirKey := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dirKey = prefix[:i+1]
	}
	start := l.root
	if dirKey != "" {
		start = filepath.Join(l.root, filepath.FromSlash(strings.TrimSuffix(dirKey, "/")))
	}
	return l.walk(ctx, start, dirKey, prefix, fn)
}

func (l *localBackend) walk(ctx context.Context, dir, dirKey, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return Permanent(err)
	}
	type item struct {
		sortKey string
		e       fs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, localTmpPrefix) || strings.HasPrefix(n, localLockPrefix) {
			continue
		}
		k := dirKey + n
		if e.IsDir() {
			k += "/"
		}
		// Keep entries that can still lead to a key under prefix.
		if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
			continue
		}
		items = append(items, item{sortKey: k, e: e})
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.sortKey, b.sortKey) })
	for _, it := range items {
		if it.e.IsDir() {
			if err := l.walk(ctx, filepath.Join(dir, it.e.Name()), it.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !it.e.Type().IsRegular() || !strings.HasPrefix(it.sortKey, prefix) {
			continue
		}
		fi, err := it.e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while listing
		}
		if err != nil {
			return Permanent(err)
		}
		if err := fn(localInfo(it.sortKey, fi)); err != nil {
			return err
		}
	}
	return nil
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
