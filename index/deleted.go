package index

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// errPendingAgain makes IngestTombstone merge and try again when a pack it
// removes became pending between its merge and its transaction.
var errPendingAgain = errors.New("pack pending again")

// IngestTombstone records that garbage collection deleted packs, under the
// tombstone's name, in one transaction: the packs and every location in
// them are forgotten, and they are remembered as deleted so that no later
// AddPack or Ingest (of an older index object that still names them) adds
// them back. Copies of their chunks in other packs stay located: locations
// are kept per (chunk, pack), so nothing needs re-ingesting. Ingesting a
// name again is a no-op. It returns how many of the packs were recorded.
func (db *DB) IngestTombstone(name string, packs []chunk.ID) (removed int, err error) {
	if name == "" || len(name) > maxNameLength {
		return 0, fmt.Errorf("ingest tombstone %q: %w: name of %d bytes", name, ErrInvalidArgument, len(name))
	}
	for range 3 {
		if err := db.Merge(); err != nil { // the pending map keeps one location per chunk
			return 0, fmt.Errorf("ingest tombstone %s: %w", name, err)
		}
		removed, err = db.ingestTombstone(name, packs)
		if !errors.Is(err, errPendingAgain) {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("ingest tombstone %s: %w", name, err)
	}
	return removed, nil
}

func (db *DB) ingestTombstone(name string, packs []chunk.ID) (removed int, err error) {
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		removed = 0
		ing := tx.Bucket(bucketIngested)
		if ing.Get([]byte(name)) != nil {
			return nil
		}
		if err := ing.Put([]byte(name), []byte{0, 0, 0, 0}); err != nil {
			return err
		}
		packsB, pendingB, deletedB := tx.Bucket(bucketPacks), tx.Bucket(bucketPending), tx.Bucket(bucketDeleted)
		for _, pack := range packs {
			if err := deletedB.Put(bytes.Clone(pack[:]), nil); err != nil {
				return err
			}
			v := packsB.Get(pack[:])
			if v == nil {
				continue
			}
			if pendingB.Get(pack[:]) != nil {
				return errPendingAgain
			}
			body, _, err := decodePackValue(v)
			if err != nil {
				return err
			}
			if err := deleteEntries(tx, body, packNumber(v)); err != nil {
				return err
			}
			if err := packsB.Delete(pack[:]); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	return removed, err
}

// IsDeleted reports whether a tombstone named the pack. An unreadable
// database reports true: the caller then does not use the pack.
func (db *DB) IsDeleted(pack chunk.ID) bool {
	deleted := true
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		deleted = tx.Bucket(bucketDeleted).Get(pack[:]) != nil
		return nil
	})
	return deleted
}

// ForEachPack calls fn with every recorded pack and its table, in pack id
// order, inside one read transaction: fn must not write to db. An error
// from fn stops the walk and is returned.
func (db *DB) ForEachPack(fn func(PackRecord) error) error {
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPacks).ForEach(func(k, v []byte) error {
			if len(k) != chunk.IDSize {
				return fmt.Errorf("%w: pack key of %d bytes", ErrCorrupt, len(k))
			}
			body, size, err := decodePackValue(v)
			if err != nil {
				return fmt.Errorf("pack %x: %w", k, err)
			}
			rec := PackRecord{Pack: chunk.ID(k), Size: size, Entries: make([]PackEntry, 0, len(body)/packEntrySize)}
			for ; len(body) > 0; body = body[packEntrySize:] {
				loc := decodeLocation(rec.Pack, body[chunk.IDSize:packEntrySize])
				rec.Entries = append(rec.Entries, PackEntry{
					ID: chunk.ID(body[:chunk.IDSize]), BlockOffset: loc.BlockOffset,
					BlockLength: loc.BlockLength, Offset: loc.Offset, Length: loc.Length,
				})
			}
			return fn(rec)
		})
	})
	if err != nil {
		return fmt.Errorf("walk packs: %w", err)
	}
	return nil
}

// LookupManyAccept is LookupMany returning, for each id, a location in a
// pack accept approves; ok is false when no recorded location qualifies.
// The pending map holds one location per chunk, so a chunk whose pending
// location is refused is found in another pack only once merged: call Merge
// first when every location matters. fn must not write to db.
func (db *DB) LookupManyAccept(ids []chunk.ID, accept func(pack chunk.ID) bool, fn func(i int, loc Location, ok bool)) error {
	db.ensureFilter()
	err := db.sliced(len(ids), func(tx *bolt.Tx, lo, hi int, moved func() bool) (int, error) {
		c, nos := tx.Bucket(bucketChunks).Cursor(), tx.Bucket(bucketPackNos).Cursor()
		recent := newRecentPacks(tx)
		for i := lo; i < hi; i++ {
			id := ids[i]
			if loc, ok := recent.find(&id, accept); ok {
				fn(i, loc, true)
				continue
			}
			db.mu.RLock()
			loc, ok, absent := db.pendingOrAbsent(&id)
			db.mu.RUnlock()
			if ok && accept(loc.Pack) {
				recent.foundElsewhere(loc.Pack)
				fn(i, loc, true)
				continue
			}
			if absent {
				fn(i, Location{}, false)
				continue
			}
			ok = false
			inTree := false
			for k, v := c.Seek(id[:]); len(k) == chunkKeySize && bytes.Equal(k[:chunk.IDSize], id[:]); k, v = c.Next() {
				inTree = true
				if len(v) != chunkValueSize {
					continue
				}
				if p, known := packOf(nos, k); known && accept(p) {
					loc, ok = decodeLocation(p, v), true
					break
				}
			}
			if !ok && moved() {
				return i, nil
			}
			if !inTree {
				db.treeMisses.Add(1)
			}
			if ok {
				recent.foundElsewhere(loc.Pack)
			}
			fn(i, loc, ok)
		}
		return hi, nil
	})
	if err != nil {
		return fmt.Errorf("lookup %d chunks: %w", len(ids), err)
	}
	return nil
}
