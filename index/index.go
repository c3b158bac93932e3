package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

const (
	// Version is the schema version of the database file. A file with
	// another version is moved aside and recreated by Open.
	Version = 1

	// MaxPackSize bounds a pack's size (and so every offset in it).
	MaxPackSize = 1 << 50

	magic = "epoch-dedup index"

	// Stored value sizes.
	packHeaderSize  = 12 // size u64, chunk count u32
	chunkValueSize  = 24 // block offset u64, block length u32, offset u32, length u32
	localValueSize  = 12 // offset u64, length u32
	validatorSize   = 32 // size, mtime, inode, dev: u64 each
	maxNameLength   = 1024
	brokenSuffix    = ".broken"
	fileNoSize      = 8
	chunkKeySize    = 2 * chunk.IDSize // chunk id, pack id
	localKeySize    = chunk.IDSize + fileNoSize
	fileChunkKeyLen = fileNoSize + chunk.IDSize
)

var (
	// ErrBadMagic is returned when a file or object is not what it claims:
	// an index database without the meta record, an index object without
	// its magic.
	ErrBadMagic = errors.New("bad magic")
	// ErrVersion is returned for a schema or format version this code does not know.
	ErrVersion = errors.New("unsupported version")
	// ErrTruncated is returned for an index object shorter than its header says.
	ErrTruncated = errors.New("truncated")
	// ErrChecksum is returned for an index object whose CRC-32C does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrCorrupt is returned for stored data that breaks the format's rules,
	// and by Check for an inconsistency between buckets.
	ErrCorrupt = errors.New("corrupt index")
	// ErrInvalidArgument is returned for arguments that could never be stored
	// (a relative path, an entry past the end of its pack).
	ErrInvalidArgument = errors.New("invalid argument")

	bucketMeta       = []byte("meta")
	bucketPacks      = []byte("packs")      // pack id -> size, count, chunk ids
	bucketChunks     = []byte("chunks")     // chunk id ‖ pack id -> location in the pack
	bucketIngested   = []byte("ingested")   // index object name -> pack count
	bucketFiles      = []byte("files")      // file no -> validator, path
	bucketPaths      = []byte("paths")      // path -> file no
	bucketLocal      = []byte("local")      // chunk id ‖ file no -> offset, length
	bucketFileChunks = []byte("filechunks") // file no ‖ chunk id -> nil (to forget a file)
	allBuckets       = [][]byte{bucketMeta, bucketPacks, bucketChunks, bucketIngested, bucketFiles, bucketPaths, bucketLocal, bucketFileChunks}

	keyMagic   = []byte("magic")
	keyVersion = []byte("version")
)

// Options configures Open. The zero value (or nil) is the default.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file lock. Zero waits forever. A timeout is an error; it never makes
	// Open recreate the file.
	Timeout time.Duration

	// NoSync skips fsync on commit. Bulk inserts get faster (see the
	// package doc for numbers), but after an OS crash or power loss the file
	// may be silently inconsistent, and bbolt can then return wrong data or
	// panic instead of failing to open. A process crash loses nothing either
	// way. Leave it off unless the cache is rebuilt after every reboot.
	NoSync bool
}

// Location is where a chunk lies in the store: in pack Pack, inside the
// compressed block [BlockOffset, BlockOffset+BlockLength), at [Offset,
// Offset+Length) of the block's decompressed bytes.
type Location struct {
	Pack        chunk.ID
	BlockOffset uint64
	BlockLength uint32
	Offset      uint32
	Length      uint32
}

// PackEntry is one chunk of a pack, as the pack's table lists it.
type PackEntry struct {
	ID          chunk.ID
	BlockOffset uint64
	BlockLength uint32
	Offset      uint32
	Length      uint32
}

// PackRecord is a pack and its table: what an index object carries.
type PackRecord struct {
	Pack    chunk.ID
	Size    int64
	Entries []PackEntry
}

// DB is the node-local index. It is safe for concurrent use.
type DB struct {
	bolt      *bolt.DB
	path      string
	recreated error
}

// Open opens or creates the index at path. A file that bbolt cannot open,
// or whose meta record is missing, foreign or of another version, is moved
// to path+".broken" (replacing an older one) and a fresh index is created:
// the index is a cache, so this loses nothing but time. Recreated reports it.
func Open(path string, opts *Options) (*DB, error) {
	if opts == nil {
		opts = &Options{}
	}
	db, err := openChecked(path, opts)
	if err == nil {
		return db, nil
	}
	if !recreatable(err) {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	if rerr := os.Rename(path, path+brokenSuffix); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return nil, fmt.Errorf("open index %s: %w; move aside: %w", path, err, rerr)
	}
	db, err2 := openChecked(path, opts)
	if err2 != nil {
		return nil, fmt.Errorf("open index %s: recreate after %w: %w", path, err, err2)
	}
	db.recreated = err
	return db, nil
}

// recreatable reports whether err means the file is bad (recreate it) and
// not that it is busy or unreachable (report it).
func recreatable(err error) bool {
	switch {
	case errors.Is(err, berrors.ErrTimeout), errors.Is(err, fs.ErrPermission),
		errors.Is(err, fs.ErrNotExist), errors.Is(err, berrors.ErrDatabaseReadOnly):
		return false
	}
	return true
}

func openChecked(path string, opts *Options) (db *DB, err error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.Timeout,
		NoSync:  opts.NoSync,
		// The freelist is rebuilt by scanning on open instead of being
		// written on every commit: cheaper bulk inserts, slower open only
		// for large files.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		// bbolt panics on some corrupt pages; for a cache that is one more
		// reason to start over, not to crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
		if err != nil {
			_ = b.Close()
			db = nil
		}
	}()
	if err := b.Update(initSchema); err != nil {
		return nil, err
	}
	return &DB{bolt: b, path: path}, nil
}

func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return fmt.Errorf("%w: bbolt file without index meta", ErrBadMagic)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyMagic, []byte(magic)); err != nil {
			return err
		}
		if err := meta.Put(keyVersion, binary.BigEndian.AppendUint32(nil, Version)); err != nil {
			return err
		}
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

func checkMeta(meta *bolt.Bucket) error {
	if !bytes.Equal(meta.Get(keyMagic), []byte(magic)) {
		return fmt.Errorf("%w: meta magic %q", ErrBadMagic, meta.Get(keyMagic))
	}
	v := meta.Get(keyVersion)
	if len(v) != 4 {
		return fmt.Errorf("%w: meta version of %d bytes", ErrCorrupt, len(v))
	}
	if got := binary.BigEndian.Uint32(v); got != Version {
		return fmt.Errorf("%w: schema version %d, want %d", ErrVersion, got, Version)
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close index %s: %w", db.path, err)
	}
	return nil
}

// Path returns the file path of the database.
func (db *DB) Path() string { return db.path }

// Recreated reports whether Open found the file unusable and started a new one.
func (db *DB) Recreated() bool { return db.recreated != nil }

// RecreateReason returns why Open recreated the file, or nil.
func (db *DB) RecreateReason() error { return db.recreated }

// AddPack records a pack and its entries. Adding a known pack is a no-op:
// packs are content addressed, so the same id means the same table.
func (db *DB) AddPack(pack chunk.ID, packSize int64, entries []PackEntry) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return addPack(tx, PackRecord{Pack: pack, Size: packSize, Entries: entries})
	})
	if err != nil {
		return fmt.Errorf("add pack %s: %w", pack, err)
	}
	return nil
}

func checkPack(p *PackRecord) error {
	if p.Pack.IsZero() {
		return fmt.Errorf("%w: zero pack id", ErrInvalidArgument)
	}
	if p.Size < 0 || p.Size >= MaxPackSize {
		return fmt.Errorf("%w: pack size %d out of range", ErrInvalidArgument, p.Size)
	}
	for i := range p.Entries {
		e := &p.Entries[i]
		switch {
		case e.ID.IsZero():
			return fmt.Errorf("%w: entry %d: zero chunk id", ErrInvalidArgument, i)
		case e.Length == 0 || e.BlockLength == 0:
			return fmt.Errorf("%w: entry %d: empty chunk or block", ErrInvalidArgument, i)
		case e.BlockOffset > uint64(p.Size) || uint64(e.BlockLength) > uint64(p.Size)-e.BlockOffset:
			return fmt.Errorf("%w: entry %d: block [%d,+%d) past pack size %d", ErrInvalidArgument, i, e.BlockOffset, e.BlockLength, p.Size)
		case uint64(e.Offset)+uint64(e.Length) > math.MaxUint32:
			return fmt.Errorf("%w: entry %d: offset %d + length %d overflows", ErrInvalidArgument, i, e.Offset, e.Length)
		}
	}
	return nil
}

func addPack(tx *bolt.Tx, p PackRecord) error {
	if err := checkPack(&p); err != nil {
		return err
	}
	packs := tx.Bucket(bucketPacks)
	if packs.Get(p.Pack[:]) != nil {
		return nil
	}
	// Insert in key order: bbolt appends to the right leaf without
	// revisiting pages, several times faster than random order.
	order := make([]int, len(p.Entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(p.Entries[a].ID[:], p.Entries[b].ID[:]) })
	chunks := tx.Bucket(bucketChunks)
	val := make([]byte, packHeaderSize, packHeaderSize+len(p.Entries)*chunk.IDSize)
	// bbolt keeps the key and value slices until commit, so each Put gets
	// its own; one allocation holds them all.
	buf := make([]byte, len(p.Entries)*(chunkKeySize+chunkValueSize))
	var prev chunk.ID
	n := uint32(0)
	for k, i := range order {
		e := &p.Entries[i]
		if k > 0 && e.ID == prev {
			continue // the same chunk twice in a pack: keep the first
		}
		prev = e.ID
		key, cv := buf[:chunkKeySize], buf[chunkKeySize:chunkKeySize+chunkValueSize]
		buf = buf[chunkKeySize+chunkValueSize:]
		copy(key, e.ID[:])
		copy(key[chunk.IDSize:], p.Pack[:])
		binary.BigEndian.PutUint64(cv[0:], e.BlockOffset)
		binary.BigEndian.PutUint32(cv[8:], e.BlockLength)
		binary.BigEndian.PutUint32(cv[12:], e.Offset)
		binary.BigEndian.PutUint32(cv[16:], e.Length)
		if err := chunks.Put(key, cv); err != nil {
			return err
		}
		val = append(val, e.ID[:]...)
		n++
	}
	binary.BigEndian.PutUint64(val[0:], uint64(p.Size))
	binary.BigEndian.PutUint32(val[8:], n)
	return packs.Put(p.Pack[:], val)
}

// Lookup returns a location of chunk id. When a chunk sits in several
// packs, the one with the lowest pack id is returned.
func (db *DB) Lookup(id chunk.ID) (loc Location, ok bool, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		loc, ok = lookup(tx.Bucket(bucketChunks).Cursor(), id)
		return nil
	})
	if err != nil {
		return Location{}, false, fmt.Errorf("lookup chunk %s: %w", id, err)
	}
	return loc, ok, nil
}

// LookupMany looks up ids in one read transaction, calling fn for each in
// order. fn must not call back into db for writing (it would deadlock).
func (db *DB) LookupMany(ids []chunk.ID, fn func(i int, loc Location, ok bool)) error {
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChunks).Cursor()
		for i, id := range ids {
			loc, ok := lookup(c, id)
			fn(i, loc, ok)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lookup %d chunks: %w", len(ids), err)
	}
	return nil
}

func lookup(c *bolt.Cursor, id chunk.ID) (Location, bool) {
	k, v := c.Seek(id[:])
	if len(k) != chunkKeySize || !bytes.Equal(k[:chunk.IDSize], id[:]) || len(v) != chunkValueSize {
		return Location{}, false
	}
	loc := Location{
		BlockOffset: binary.BigEndian.Uint64(v[0:]),
		BlockLength: binary.BigEndian.Uint32(v[8:]),
		Offset:      binary.BigEndian.Uint32(v[12:]),
		Length:      binary.BigEndian.Uint32(v[16:]),
	}
	copy(loc.Pack[:], k[chunk.IDSize:])
	return loc, true
}

// HasPack reports whether the pack is recorded. An unreadable database
// reports false: the caller then treats the pack as unknown, which is safe.
func (db *DB) HasPack(pack chunk.ID) bool {
	found := false
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketPacks).Get(pack[:]) != nil
		return nil
	})
	return found
}

// PackCount returns the number of packs recorded. It walks the bucket.
func (db *DB) PackCount() (int, error) { return db.count(bucketPacks) }

// ChunkCount returns the number of (chunk, pack) locations recorded. It
// walks the bucket.
func (db *DB) ChunkCount() (int, error) { return db.count(bucketChunks) }

func (db *DB) count(bucket []byte) (n int, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", bucket, err)
	}
	return n, nil
}

// RemovePack forgets a pack and the locations in it. Removing an unknown
// pack is a no-op. Index object names recorded by Ingest stay recorded:
// the caller removing packs (gc) owns that bookkeeping.
func (db *DB) RemovePack(pack chunk.ID) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		packs := tx.Bucket(bucketPacks)
		v := packs.Get(pack[:])
		if v == nil {
			return nil
		}
		ids, _, err := decodePackValue(v)
		if err != nil {
			return err
		}
		chunks := tx.Bucket(bucketChunks)
		var key [chunkKeySize]byte
		copy(key[chunk.IDSize:], pack[:])
		for len(ids) > 0 {
			copy(key[:], ids[:chunk.IDSize])
			ids = ids[chunk.IDSize:]
			if err := chunks.Delete(key[:]); err != nil {
				return err
			}
		}
		return packs.Delete(pack[:])
	})
	if err != nil {
		return fmt.Errorf("remove pack %s: %w", pack, err)
	}
	return nil
}

// decodePackValue returns the concatenated chunk ids and size of a pack value.
func decodePackValue(v []byte) (ids []byte, size int64, err error) {
	if len(v) < packHeaderSize {
		return nil, 0, fmt.Errorf("%w: pack value of %d bytes", ErrCorrupt, len(v))
	}
	size = int64(binary.BigEndian.Uint64(v))
	n := binary.BigEndian.Uint32(v[8:])
	ids = v[packHeaderSize:]
	if uint64(len(ids)) != uint64(n)*chunk.IDSize || size < 0 || size >= MaxPackSize {
		return nil, 0, fmt.Errorf("%w: pack value of %d bytes for %d chunks, size %d", ErrCorrupt, len(v), n, size)
	}
	return ids, size, nil
}

// Ingested reports whether the index object name was ingested.
func (db *DB) Ingested(name string) (ok bool, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketIngested).Get([]byte(name)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("ingested %s: %w", name, err)
	}
	return ok, nil
}

// Ingest adds the packs of index object name and records the name, in one
// transaction: after a crash either both are there or neither. Ingesting a
// name again is a no-op.
func (db *DB) Ingest(name string, packs []PackRecord) error {
	if name == "" || len(name) > maxNameLength {
		return fmt.Errorf("ingest %q: %w: name of %d bytes", name, ErrInvalidArgument, len(name))
	}
	for i := range packs {
		if err := checkPack(&packs[i]); err != nil {
			return fmt.Errorf("ingest %s: pack %d: %w", name, i, err)
		}
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		ing := tx.Bucket(bucketIngested)
		if ing.Get([]byte(name)) != nil {
			return nil
		}
		for _, p := range packs {
			if err := addPack(tx, p); err != nil {
				return fmt.Errorf("pack %s: %w", p.Pack, err)
			}
		}
		return ing.Put([]byte(name), binary.BigEndian.AppendUint32(nil, uint32(min(len(packs), math.MaxUint32))))
	})
	if err != nil {
		return fmt.Errorf("ingest %s: %w", name, err)
	}
	return nil
}
