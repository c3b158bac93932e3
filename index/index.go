package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

const (
	// Version is the schema version of the database file. A file with
	// another version is moved aside and recreated by Open.
	Version = 2

	// MaxPackSize bounds a pack's size (and so every offset in it).
	MaxPackSize = 1 << 50

	magic = "epoch-dedup index"

	// Stored value sizes.
	packHeaderSize  = 16 // size u64, chunk count u32, pack number u32
	chunkValueSize  = 20 // block offset u64, block length u32, offset u32, length u32
	packEntrySize   = chunk.IDSize + chunkValueSize
	localValueSize  = 12 // offset u64, length u32
	validatorSize   = 32 // size, mtime, inode, dev: u64 each
	maxNameLength   = 1024
	brokenSuffix    = ".broken"
	fileNoSize      = 8
	packNoSize      = 4
	chunkKeySize    = chunk.IDSize + packNoSize // chunk id, pack number
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
	bucketPacks      = []byte("packs")      // pack id -> size, count, number, entries (id, location)
	bucketPackNos    = []byte("packnos")    // pack number -> pack id
	bucketPending    = []byte("pending")    // pack id -> nil: packs not yet merged into chunks
	bucketChunks     = []byte("chunks")     // chunk id ‖ pack number -> location in the pack
	bucketIngested   = []byte("ingested")   // index object name -> pack count
	bucketFiles      = []byte("files")      // file no -> validator, path
	bucketPaths      = []byte("paths")      // path -> file no
	bucketLocal      = []byte("local")      // chunk id ‖ file no -> offset, length
	bucketFileChunks = []byte("filechunks") // file no ‖ chunk id -> nil (to forget a file)
	bucketDeleted    = []byte("deleted")    // pack id -> nil: packs a gc tombstone names; never added again
	bucketDigests    = []byte("digests")    // recipe content key -> SHA-256 of those bytes
	bucketRecipeIDs  = []byte("recipeIDs")  // recipe content key -> id of a full recipe object in the store
	allBuckets       = [][]byte{bucketMeta, bucketPacks, bucketPackNos, bucketPending, bucketChunks, bucketIngested, bucketFiles, bucketPaths, bucketLocal, bucketFileChunks, bucketDeleted, bucketDigests, bucketRecipeIDs}

	keyMagic   = []byte("magic")
	keyVersion = []byte("version")

	// errStop ends a ForEach early once Check has reported enough problems.
	errStop = errors.New("stop")
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

	// MergeThreshold is how many pending chunk entries AddPack and Ingest
	// let accumulate before merging them into the chunk tree (see Merge).
	// Zero means DefaultMergeThreshold; negative merges on
	// every call. Below 16384 it also bounds the chunks one AddLocalFile
	// transaction records (at least 256), for the same reason: memory.
	MergeThreshold int

	// BackgroundMerge lets AddPack, Ingest and IngestAll return once their
	// packs are recorded and merge in a goroutine of its own when
	// MergeThreshold is reached, so a push hashes its next pages while the
	// merge runs instead of after it. Lookups see every entry throughout,
	// pending or merged. Pending entries are bounded at twice the
	// threshold: a call that would go past it waits for the merge.
	// StageAll never merges (see the package doc). Close waits for a merge
	// under way. A failed background merge loses nothing (its entries stay
	// pending for the next merge); Close returns its error if no merge
	// succeeded since.
	BackgroundMerge bool
}

// DefaultMergeThreshold is the MergeThreshold used when Options leaves it
// zero: 2^18 entries, 1 GiB of 4 KiB chunks, about 20 MiB of memory.
const DefaultMergeThreshold = 1 << 18

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
	threshold int

	// mu guards pending: the entries of packs recorded but not yet merged
	// into the chunks bucket (see AddPack). Writers are serialised by bbolt;
	// the map is changed only after the transaction that justifies the
	// change has committed, so a lookup never sees a location that is not
	// durable.
	mu      sync.RWMutex
	pending map[chunk.ID]Location
	// filter, under mu, rules ids out of the chunk tree (see treeFilter);
	// nil until lookups have missed in the tree often enough (treeMisses,
	// see filterWanted) and no merge runs.
	filter     *treeFilter
	treeMisses atomic.Int64
	// lookedUp counts the ids looked up since the mapped pages were last
	// dropped (see sliced).
	lookedUp atomic.Int64
	// merged counts the merges that moved entries out of pending, bumped
	// under mu as they go. A lookup that misses in a read transaction
	// opened before such a move, and then in pending after it, missed an
	// entry that is there; it looks again (see sliced).
	merged atomic.Uint64

	// mergeMu serialises merges: two would write the same records.
	// merging is set while a merge holds it.
	mergeMu sync.Mutex
	merging atomic.Bool
	// staged: StageAll recorded packs whose entries only a merge makes
	// visible (they are not in pending).
	staged atomic.Bool

	// With Options.BackgroundMerge: whether a background merge runs, the
	// goroutine to wait for, and the error of the last one (under mu).
	background bool
	bgRunning  atomic.Bool
	bgWG       sync.WaitGroup
	bgErr      error

	// localMu guards the AddLocalFile claims (see claimLocal).
	localMu  sync.Mutex
	localGen map[string]uint64
	localSeq uint64
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
	d := &DB{bolt: b, path: path, threshold: opts.MergeThreshold, background: opts.BackgroundMerge, pending: map[chunk.ID]Location{}}
	if d.threshold == 0 {
		d.threshold = DefaultMergeThreshold
	}
	// Packs a crash left pending are served from memory again, unless
	// they are many (a catch-up staged by StageAll): those are merged now.
	_, total, _, err := d.pendingPacks()
	if err != nil {
		return nil, err
	}
	if total > 2*max(d.threshold, 0) {
		if err := d.merge(); err != nil {
			return nil, err
		}
		return d, nil
	}
	if err := b.View(d.loadPending); err != nil {
		return nil, err
	}
	return d, nil
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
	db.bgWG.Wait()
	bgErr := db.takeBackgroundErr()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close index %s: %w", db.path, err)
	}
	if bgErr != nil {
		return fmt.Errorf("close index %s: %w", db.path, bgErr)
	}
	return nil
}

// Path returns the file path of the database.
func (db *DB) Path() string { return db.path }

// Recreated reports whether Open found the file unusable and started a new one.
func (db *DB) Recreated() bool { return db.recreated != nil }

// RecreateReason returns why Open recreated the file, or nil.
func (db *DB) RecreateReason() error { return db.recreated }
