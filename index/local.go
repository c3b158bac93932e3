package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// Validator identifies a version of a local file cheaply. A pull compares
// it with a fresh stat before reading chunk bytes from the file, and then
// re-hashes the bytes anyway: a file rewritten in place within the mtime
// granularity keeps its validator.
type Validator struct {
	Size      int64
	ModTimeNs int64
	Inode     uint64
	Dev       uint64
}

// LocalChunk is a chunk found in a local file at [Offset, Offset+Length).
type LocalChunk struct {
	ID     chunk.ID
	Offset int64
	Length uint32
}

// LocalRef is a candidate copy of a chunk in a local file.
type LocalRef struct {
	Path      string
	Offset    int64
	Length    uint32
	Validator Validator
}

// ValidatorFor returns the validator of the file fi describes. Inode and
// Dev are zero where the platform does not expose them.
func ValidatorFor(fi os.FileInfo) Validator {
	v := Validator{Size: fi.Size(), ModTimeNs: fi.ModTime().UnixNano()}
	v.Inode, v.Dev = inodeDev(fi)
	return v
}

// AddLocalFile records which chunks the file at path holds, replacing what
// was recorded for it before. path must be absolute and clean. Only the
// first offset of a chunk repeated within the file is kept: one copy
// source is enough. chunks is iterated several times: once to check every
// chunk (an invalid one fails the call before anything is written), then
// once per range of chunk ids, each recorded sorted in a transaction of
// its own, so neither a sorted copy of all chunks nor a transaction
// touching the whole local tree is ever held in memory.
//
// A path recorded before keeps its file number, and each range changes
// only what differs from the old records: a new revision of a memory file
// written where the old one was (a warm pull, a VM saved again) rewrites
// the records of its changed pages, not all of them.
//
// A range holds about 16384 chunks (fewer if MergeThreshold is lower, but
// at least 256; more for files of over a million chunks, which are read
// at most 64 times). A crash in between leaves the file partly recorded,
// possibly with records of the content it replaced, which costs nothing
// (every copy is validated and re-hashed before use). If another
// AddLocalFile of the same path starts meanwhile, the later one wins and
// this one stops.
func (db *DB) AddLocalFile(path string, v Validator, chunks iter.Seq[LocalChunk]) error {
	if err := checkPath(path); err != nil {
		return fmt.Errorf("add local file: %w", err)
	}
	n := 0
	var bad error
	for c := range chunks {
		if c.ID.IsZero() || c.Length == 0 || c.Offset < 0 || c.Offset > v.Size-int64(c.Length) {
			bad = fmt.Errorf("add local file %s: %w: chunk %d at [%d,+%d) outside file of %d bytes",
				path, ErrInvalidArgument, n, c.Offset, c.Length, v.Size)
			break
		}
		n++
	}
	if bad != nil {
		return bad
	}
	current := db.claimLocal(path)
	defer current(true)

	var (
		noKey  []byte
		reused bool
	)
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		paths, files := tx.Bucket(bucketPaths), tx.Bucket(bucketFiles)
		if k := paths.Get([]byte(path)); k != nil {
			if len(k) != fileNoSize {
				return fmt.Errorf("%w: file number of %d bytes for %s", ErrCorrupt, len(k), path)
			}
			noKey, reused = bytes.Clone(k), true
		} else {
			no, err := files.NextSequence()
			if err != nil {
				return err
			}
			noKey = binary.BigEndian.AppendUint64(nil, no)
			if err := paths.Put([]byte(path), noKey); err != nil {
				return err
			}
		}
		return files.Put(noKey, append(encodeValidator(v), path...))
	})
	per := min(max(db.threshold, 256), localSlice)
	ranges := min((n+per-1)/per, localPasses)
	if reused {
		ranges = max(ranges, 1) // every old record is visited, even for an empty file
	}
	var batch []LocalChunk
	for r := 0; r < ranges && err == nil; r++ {
		lo, hi := idRange(r, ranges)
		batch = batch[:0]
		for c := range chunks {
			if lead := uint64(binary.BigEndian.Uint32(c.ID[:])); lead >= lo && lead < hi {
				batch = append(batch, c)
			}
		}
		// Key order for bbolt (see addPack); the stable sort keeps the
		// first offset of a repeated chunk first, and Compact keeps it.
		slices.SortStableFunc(batch, func(a, b LocalChunk) int { return bytes.Compare(a.ID[:], b.ID[:]) })
		batch = slices.CompactFunc(batch, func(a, b LocalChunk) bool { return a.ID == b.ID })
		var replaced bool
		err = db.bolt.Update(func(tx *bolt.Tx) error {
			if replaced = !current(false); replaced {
				return nil
			}
			if reused {
				return updateLocalChunks(tx, noKey, batch, lo, hi)
			}
			return putLocalChunks(tx, noKey, batch)
		})
		if replaced {
			break
		}
		// The next range touches other leaves: unmap this one's (see
		// Merge), or recording a 4 GiB memory file ends with the whole
		// local tree mapped.
		db.dropResident()
	}
	if err != nil {
		return fmt.Errorf("add local file %s: %w", path, err)
	}
	return nil
}

// claimLocal makes this call the latest AddLocalFile of path. The returned
// func reports whether it still is; with done set it also forgets the
// claim if it is still the latest. One process holds the file (bbolt's
// flock), so the claims live in memory.
func (db *DB) claimLocal(path string) func(done bool) bool {
	db.localMu.Lock()
	defer db.localMu.Unlock()
	if db.localGen == nil {
		db.localGen = map[string]uint64{}
	}
	db.localSeq++
	gen := db.localSeq
	db.localGen[path] = gen
	return func(done bool) bool {
		db.localMu.Lock()
		defer db.localMu.Unlock()
		latest := db.localGen[path] == gen
		if latest && done {
			delete(db.localGen, path)
		}
		return latest
	}
}

// localSlice bounds the chunks one AddLocalFile transaction records. The
// chunks are sorted, so a slice is a key range: its transaction holds the
// leaves of that range only (16384 entries: about 2 MiB of new leaves).
const localSlice = 16384

// localPasses bounds how often AddLocalFile reads its chunks: reading a
// 4 GiB memory file's recipe once takes a few milliseconds.
const localPasses = 64

// updateLocalChunks makes the records of file noKey for ids leading with
// 32 bits in [lo, hi) those of chunks (sorted by id, in that range): old
// records of other ids go, new ones come, and a record whose place did not
// change is left as it is.
func updateLocalChunks(tx *bolt.Tx, noKey []byte, chunks []LocalChunk, lo, hi uint64) error {
	local, fileChunks := tx.Bucket(bucketLocal), tx.Bucket(bucketFileChunks)
	var old []chunk.ID
	start := binary.BigEndian.AppendUint32(bytes.Clone(noKey), uint32(lo))
	c := fileChunks.Cursor()
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, noKey); k, _ = c.Next() {
		if len(k) != fileChunkKeyLen {
			return fmt.Errorf("%w: file chunk key of %d bytes", ErrCorrupt, len(k))
		}
		if uint64(binary.BigEndian.Uint32(k[fileNoSize:])) >= hi {
			break
		}
		old = append(old, chunk.ID(k[fileNoSize:]))
	}
	// Deletes after the listing: see forgetFile.
	var changed []LocalChunk
	i := 0
	for _, ch := range chunks {
		for ; i < len(old) && bytes.Compare(old[i][:], ch.ID[:]) < 0; i++ {
			if err := deleteLocalRecord(local, fileChunks, noKey, old[i]); err != nil {
				return err
			}
		}
		if i < len(old) && old[i] == ch.ID {
			i++
			lk := localKey(ch.ID, noKey)
			if v := local.Get(lk[:]); len(v) == localValueSize &&
				int64(binary.BigEndian.Uint64(v)) == ch.Offset && binary.BigEndian.Uint32(v[8:]) == ch.Length {
				continue
			}
		}
		changed = append(changed, ch)
	}
	for ; i < len(old); i++ {
		if err := deleteLocalRecord(local, fileChunks, noKey, old[i]); err != nil {
			return err
		}
	}
	return putLocalChunks(tx, noKey, changed)
}

// localKey is the key of chunk id's record for file noKey in the local
// bucket: chunk id, then file number.
func localKey(id chunk.ID, noKey []byte) (k [localKeySize]byte) {
	copy(k[:], id[:])
	copy(k[chunk.IDSize:], noKey)
	return k
}

// deleteLocalRecord drops the record of chunk id for file noKey from both
// buckets that hold it.
func deleteLocalRecord(local, fileChunks *bolt.Bucket, noKey []byte, id chunk.ID) error {
	var fk [fileChunkKeyLen]byte
	copy(fk[:], noKey)
	copy(fk[fileNoSize:], id[:])
	if err := fileChunks.Delete(fk[:]); err != nil {
		return err
	}
	lk := localKey(id, noKey)
	return local.Delete(lk[:])
}

// putLocalChunks records chunks, sorted by id, as held by file noKey.
func putLocalChunks(tx *bolt.Tx, noKey []byte, chunks []LocalChunk) error {
	local, fileChunks := tx.Bucket(bucketLocal), tx.Bucket(bucketFileChunks)
	// bbolt keeps key and value slices until commit: one buffer, no reuse.
	buf := make([]byte, len(chunks)*(localKeySize+localValueSize+fileChunkKeyLen))
	for i := range chunks {
		c := &chunks[i]
		lk, lv, fk := buf[:localKeySize], buf[localKeySize:localKeySize+localValueSize], buf[localKeySize+localValueSize:localKeySize+localValueSize+fileChunkKeyLen]
		buf = buf[localKeySize+localValueSize+fileChunkKeyLen:]
		copy(lk, c.ID[:])
		copy(lk[chunk.IDSize:], noKey)
		copy(fk, noKey)
		copy(fk[fileNoSize:], c.ID[:])
		binary.BigEndian.PutUint64(lv[0:], uint64(c.Offset))
		binary.BigEndian.PutUint32(lv[8:], c.Length)
		if err := local.Put(lk, lv); err != nil {
			return err
		}
		if err := fileChunks.Put(fk, nil); err != nil {
			return err
		}
	}
	return nil
}

// FindLocal returns the local files recorded to hold chunk id. The caller
// must check each validator against a fresh stat and re-hash the bytes.
func (db *DB) FindLocal(id chunk.ID) ([]LocalRef, error) {
	var refs []LocalRef
	err := db.bolt.View(func(tx *bolt.Tx) error {
		files := tx.Bucket(bucketFiles)
		c := tx.Bucket(bucketLocal).Cursor()
		for k, v := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, v = c.Next() {
			if len(k) != localKeySize || len(v) != localValueSize {
				return fmt.Errorf("%w: local entry of %d/%d bytes", ErrCorrupt, len(k), len(v))
			}
			fv := files.Get(k[chunk.IDSize:])
			if fv == nil {
				return fmt.Errorf("%w: chunk %s points to unknown file %d", ErrCorrupt, id, binary.BigEndian.Uint64(k[chunk.IDSize:]))
			}
			val, path, err := decodeFile(fv)
			if err != nil {
				return err
			}
			refs = append(refs, LocalRef{
				Path:      path,
				Offset:    int64(binary.BigEndian.Uint64(v)),
				Length:    binary.BigEndian.Uint32(v[8:]),
				Validator: val,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find local chunk %s: %w", id, err)
	}
	return refs, nil
}

// FindLocalMany calls fn with the local copies of each of ids (fn is not
// called for chunks no local file holds), in one read transaction per
// lookupSlice ids (see sliced): a pull asks this for every chunk of a
// multi-GiB file, where a transaction per chunk would cost more than the
// copying. Sorted ids make the seeks sequential. The refs slice is reused
// between calls.
func (db *DB) FindLocalMany(ids []chunk.ID, fn func(i int, refs []LocalRef) error) error {
	type fileInfo struct {
		path string
		val  Validator
	}
	// File numbers are never reused, so what a number says holds across
	// the slices' transactions.
	known := map[uint64]fileInfo{}
	var refs []LocalRef
	err := db.sliced(len(ids), func(tx *bolt.Tx, lo, hi int, _ func() bool) (int, error) {
		files := tx.Bucket(bucketFiles)
		c := tx.Bucket(bucketLocal).Cursor()
		for i := lo; i < hi; i++ {
			id := ids[i]
			refs = refs[:0]
			for k, v := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, v = c.Next() {
				if len(k) != localKeySize || len(v) != localValueSize {
					return 0, fmt.Errorf("%w: local entry of %d/%d bytes", ErrCorrupt, len(k), len(v))
				}
				no := binary.BigEndian.Uint64(k[chunk.IDSize:])
				fi, ok := known[no]
				if !ok {
					fv := files.Get(k[chunk.IDSize:])
					if fv == nil {
						return 0, fmt.Errorf("%w: chunk %s points to unknown file %d", ErrCorrupt, id, no)
					}
					val, path, err := decodeFile(fv)
					if err != nil {
						return 0, err
					}
					fi = fileInfo{path: path, val: val}
					known[no] = fi
				}
				refs = append(refs, LocalRef{
					Path:      fi.path,
					Offset:    int64(binary.BigEndian.Uint64(v)),
					Length:    binary.BigEndian.Uint32(v[8:]),
					Validator: fi.val,
				})
			}
			if len(refs) > 0 {
				if err := fn(i, refs); err != nil {
					return 0, err
				}
			}
		}
		return hi, nil
	})
	if err != nil {
		return fmt.Errorf("find local chunks: %w", err)
	}
	return nil
}

// ForgetLocalFile drops what was recorded for path. Unknown paths are a no-op.
func (db *DB) ForgetLocalFile(path string) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error { return forgetFile(tx, path) })
	if err != nil {
		return fmt.Errorf("forget local file %s: %w", path, err)
	}
	return nil
}

// LocalFiles returns the recorded paths in byte order.
func (db *DB) LocalFiles() ([]string, error) {
	var paths []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPaths).ForEach(func(k, _ []byte) error {
			paths = append(paths, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list local files: %w", err)
	}
	return paths, nil
}

func forgetFile(tx *bolt.Tx, path string) error {
	paths := tx.Bucket(bucketPaths)
	noKey := paths.Get([]byte(path))
	if noKey == nil {
		return nil
	}
	if len(noKey) != fileNoSize {
		return fmt.Errorf("%w: file number of %d bytes for %s", ErrCorrupt, len(noKey), path)
	}
	noKey = bytes.Clone(noKey) // bbolt memory is invalid after the deletes below
	local, fileChunks := tx.Bucket(bucketLocal), tx.Bucket(bucketFileChunks)
	// List first, then delete each key. Deleting under a cursor and seeking
	// back to the prefix walks every leaf the deletes emptied so far (bbolt
	// rebalances only at commit): quadratic, 0.66 s of a 1.5 s warm pull of
	// a 256 MiB memory file (45875 chunks), minutes at 4 GiB.
	var ids []chunk.ID
	c := fileChunks.Cursor()
	for k, _ := c.Seek(noKey); k != nil && bytes.HasPrefix(k, noKey); k, _ = c.Next() {
		if len(k) != fileChunkKeyLen {
			return fmt.Errorf("%w: file chunk key of %d bytes", ErrCorrupt, len(k))
		}
		ids = append(ids, chunk.ID(k[fileNoSize:]))
	}
	for _, id := range ids {
		if err := deleteLocalRecord(local, fileChunks, noKey, id); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketFiles).Delete(noKey); err != nil {
		return err
	}
	return paths.Delete([]byte(path))
}

func checkPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || len(path) > 4096 {
		return fmt.Errorf("%w: path %q must be absolute and clean", ErrInvalidArgument, path)
	}
	return nil
}

func encodeValidator(v Validator) []byte {
	b := make([]byte, validatorSize, validatorSize+64)
	binary.BigEndian.PutUint64(b[0:], uint64(v.Size))
	binary.BigEndian.PutUint64(b[8:], uint64(v.ModTimeNs))
	binary.BigEndian.PutUint64(b[16:], v.Inode)
	binary.BigEndian.PutUint64(b[24:], v.Dev)
	return b
}

func decodeFile(b []byte) (Validator, string, error) {
	if len(b) <= validatorSize {
		return Validator{}, "", fmt.Errorf("%w: file record of %d bytes", ErrCorrupt, len(b))
	}
	v := Validator{
		Size:      int64(binary.BigEndian.Uint64(b[0:])),
		ModTimeNs: int64(binary.BigEndian.Uint64(b[8:])),
		Inode:     binary.BigEndian.Uint64(b[16:]),
		Dev:       binary.BigEndian.Uint64(b[24:]),
	}
	return v, string(b[validatorSize:]), nil
}
