package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// AddPack records a pack and its entries. Adding a known pack is a no-op:
// packs are content addressed, so the same id means the same table. A pack
// a tombstone named (IngestTombstone) is never added again.
//
// The pack's table is written as one value and its entries are served
// from memory until MergeThreshold entries are pending; then they are
// merged into the chunk tree in one transaction. Inserting random keys
// into a B+tree a few thousand at a time rewrites most of its leaves on
// every commit; merging in large sorted batches does that once per batch.
func (db *DB) AddPack(pack chunk.ID, packSize int64, entries []PackEntry) error {
	how := mergeNow
	if db.background {
		how = mergeLater
	}
	if err := db.addPacks([]IndexObject{{Packs: []PackRecord{{Pack: pack, Size: packSize, Entries: entries}}}}, how); err != nil {
		return fmt.Errorf("add pack %s: %w", pack, err)
	}
	return nil
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
	return db.IngestAll([]IndexObject{{Name: name, Packs: packs}})
}

// IndexObject is one decoded index object, named by its key in the store.
type IndexObject struct {
	Name  string
	Packs []PackRecord
}

// IngestAll is Ingest for several index objects in one transaction, so a
// node catching up on thousands of them pays one commit (one fsync), not
// one each. Names already ingested are skipped.
func (db *DB) IngestAll(objs []IndexObject) error {
	how := mergeNow
	if db.background {
		how = mergeLater
	}
	return db.ingest(objs, how)
}

// StageAll records the packs of objs and their names as IngestAll does,
// but never merges: a node catching up on many index objects (a new
// node's first pull) stages them a batch at a time, then calls Merge once,
// which rewrites each leaf of the chunk tree once instead of once per
// MergeThreshold entries. While the entries staged fit below the threshold
// they are served from memory as IngestAll's are; past it they are left
// on disk and answer no lookup until Merge returns (Staged reports it).
// Staged entries a crash leaves unmerged are served or merged when the
// file is next opened.
func (db *DB) StageAll(objs []IndexObject) error {
	return db.ingest(objs, mergeNever)
}

// Staged reports whether StageAll recorded packs that wait for a Merge.
func (db *DB) Staged() bool { return db.staged.Load() }

func (db *DB) ingest(objs []IndexObject, how mergeWhen) error {
	for _, o := range objs {
		if o.Name == "" || len(o.Name) > maxNameLength {
			return fmt.Errorf("ingest %q: %w: name of %d bytes", o.Name, ErrInvalidArgument, len(o.Name))
		}
	}
	if err := db.addPacks(objs, how); err != nil {
		if len(objs) == 1 {
			return fmt.Errorf("ingest %s: %w", objs[0].Name, err)
		}
		return fmt.Errorf("ingest %d index objects: %w", len(objs), err)
	}
	return nil
}

// mergeWhen says what addPacks does once the packs are recorded.
type mergeWhen int

const (
	mergeNow   mergeWhen = iota // serve the entries from memory; merge at the threshold
	mergeLater                  // the same, merging in the background below twice the threshold
	mergeNever                  // stage: leave the entries to the next Merge
)

// addPacks records the packs of objs (and their names, when not empty) as
// pending, then, unless it stages them, serves their entries from memory
// and merges if enough is pending.
func (db *DB) addPacks(objs []IndexObject, how mergeWhen) error {
	for _, o := range objs {
		for i := range o.Packs {
			if err := checkPack(&o.Packs[i]); err != nil {
				if len(objs) > 1 {
					return fmt.Errorf("%s: pack %d: %w", o.Name, i, err)
				}
				return fmt.Errorf("pack %d: %w", i, err)
			}
		}
	}
	var added []PackRecord
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		added = added[:0]
		ing := tx.Bucket(bucketIngested)
		packsB, pendingB, deletedB, nosB := tx.Bucket(bucketPacks), tx.Bucket(bucketPending), tx.Bucket(bucketDeleted), tx.Bucket(bucketPackNos)
		for _, o := range objs {
			if o.Name != "" {
				if ing.Get([]byte(o.Name)) != nil {
					continue
				}
				if err := ing.Put([]byte(o.Name), binary.BigEndian.AppendUint32(nil, uint32(min(len(o.Packs), math.MaxUint32)))); err != nil {
					return err
				}
			}
			for _, p := range o.Packs {
				if packsB.Get(p.Pack[:]) != nil || deletedB.Get(p.Pack[:]) != nil {
					continue
				}
				key := bytes.Clone(p.Pack[:])
				// The chunk tree names the pack by a number of 4 bytes
				// instead of its id of 32: each of its millions of keys
				// is 28 bytes shorter.
				no, err := nosB.NextSequence()
				if err != nil {
					return err
				}
				if no > math.MaxUint32 {
					return fmt.Errorf("%w: pack numbers exhausted", ErrInvalidArgument)
				}
				if err := nosB.Put(binary.BigEndian.AppendUint32(nil, uint32(no)), key); err != nil {
					return err
				}
				if err := packsB.Put(key, encodePackValue(&p, uint32(no))); err != nil {
					return err
				}
				if err := pendingB.Put(key, nil); err != nil {
					return err
				}
				added = append(added, p)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	db.mu.Lock()
	if how == mergeNever && !db.stageInMemory(added) {
		db.mu.Unlock()
		if len(added) > 0 {
			db.staged.Store(true)
		}
		return nil
	}
	for _, p := range added {
		for _, e := range p.Entries {
			if _, dup := db.pending[e.ID]; !dup {
				db.pending[e.ID] = Location{Pack: p.Pack, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length}
			}
		}
	}
	n := len(db.pending)
	db.mu.Unlock()
	switch {
	case how == mergeNever || n < db.threshold:
		return nil
	case how == mergeLater && n < 2*db.threshold:
		db.mergeInBackground()
		return nil
	case n < 2*db.threshold && db.merging.Load():
		// A merge is under way (another goroutine's, or the
		// background's); these entries wait for the next instead of
		// queueing a merge of their own right behind it, which would
		// rewrite the tree for a few thousand entries: a 4 GiB push
		// did that after every merge, 0.2-0.4 s each.
		return nil
	default:
		return db.Merge()
	}
}

// stageInMemory reports whether StageAll may serve the entries of added
// from memory, as IngestAll does, instead of leaving them to the next
// Merge: while nothing is staged and they fit below the threshold, so a
// small catch-up does not force a merge. Called with mu held.
func (db *DB) stageInMemory(added []PackRecord) bool {
	if db.staged.Load() {
		return false
	}
	n := len(db.pending)
	for _, p := range added {
		n += len(p.Entries)
	}
	return n < db.threshold
}

// mergeInBackground starts a merge in its own goroutine unless one runs.
// Entries recorded after it started wait for the next. A failed merge
// leaves its entries pending, so a later merge does them; Close reports
// the failure if none did.
func (db *DB) mergeInBackground() {
	if !db.bgRunning.CompareAndSwap(false, true) {
		return
	}
	db.bgWG.Go(func() {
		defer db.bgRunning.Store(false)
		if err := db.merge(); err != nil {
			db.mu.Lock()
			db.bgErr = err
			db.mu.Unlock()
		}
	})
}

// takeBackgroundErr returns and clears the error of a background merge.
func (db *DB) takeBackgroundErr() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.bgErr
	db.bgErr = nil
	return err
}

// Merge moves all pending entries into the chunk tree. AddPack and Ingest
// call it when MergeThreshold is reached; call it directly to bound the
// work a later call will do, e.g. before Close.
//
// The entries are sorted and written in key-range slices, one transaction
// each (mergeSlice): a transaction holds in memory every leaf it touches,
// and one transaction for a batch of random ids would touch, and hold, the
// whole tree. Slices keep each leaf rewritten about once per merge, as one
// transaction would, with memory bounded by the slice. The packs leave the
// pending bucket only in the last transaction: after a crash in between,
// the next merge writes the same entries again (the same key and value).
func (db *DB) Merge() error {
	err := db.merge()
	if err == nil {
		_ = db.takeBackgroundErr() // what it failed to merge is merged now
	}
	return err
}

func (db *DB) merge() (err error) {
	db.mergeMu.Lock()
	defer db.mergeMu.Unlock()
	db.merging.Store(true)
	defer db.merging.Store(false)
	// What was staged before this point is merged by this merge, or
	// still waits if it fails.
	if db.staged.Swap(false) {
		defer func() {
			if err != nil {
				db.staged.Store(true)
			}
		}()
	}
	packIDs, total, treeBytes, err := db.pendingPacks()
	if err != nil {
		return fmt.Errorf("merge pending packs: %w", err)
	}
	if len(packIDs) == 0 {
		return nil
	}
	per := mergeSlice(total, treeBytes)
	// Into an empty tree (a cold node's catch-up) the sorted records are a
	// bulk load: fill each leaf whole, where bbolt's default leaves half
	// of every leaf empty for inserts between. A cold pull of a 4 GiB
	// memory file: index file 400 -> 324 MB, peak RSS 192-196 -> 185 MiB.
	fill := bolt.DefaultFillPercent
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketChunks).Cursor().First(); k == nil {
			fill = 1
		}
		return nil
	})
	ranges := (total + mergeRangeRecords - 1) / mergeRangeRecords
	for r := range ranges {
		lo, hi := idRange(r, ranges)
		recs, err := db.pendingRecords(packIDs, lo, hi)
		if err != nil {
			return fmt.Errorf("merge pending packs: %w", err)
		}
		for rest := recs; len(rest) > 0; {
			part := rest[:min(len(rest), per)]
			rest = rest[len(part):]
			err := db.bolt.Update(func(tx *bolt.Tx) error {
				chunks := tx.Bucket(bucketChunks)
				chunks.FillPercent = fill
				for i := range part {
					// recs is not touched again before the commit, as bbolt requires.
					if err := chunks.Put(part[i][:chunkKeySize], part[i][chunkKeySize:]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("merge pending packs: %w", err)
			}
			// The leaves this transaction touched (and the pending
			// packs' tables, the first time) are not needed by the next;
			// unmapped only per range, a merge held most of the file
			// mapped (see mergeSliceBytes).
			db.dropResident()
		}
		// The chunk tree answers for these ids now.
		db.mu.Lock()
		for i := range recs {
			id := (*chunk.ID)(recs[i][:chunk.IDSize])
			if db.filter != nil {
				db.filter.add(id)
			}
			delete(db.pending, *id)
		}
		db.merged.Add(1)
		db.mu.Unlock()
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		pendingB := tx.Bucket(bucketPending)
		for _, k := range packIDs {
			if err := pendingB.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("merge pending packs: %w", err)
	}
	// A Go map never gives back the room it grew to: a cold node that
	// ingested a store's worth of entries would keep it for good. (Keeping
	// room for a threshold's worth saved a 1 GiB push 0.1 s of CPU and
	// cost a cold pull of 4 GiB 7 MB of heap for good.)
	db.mu.Lock()
	rest := make(map[chunk.ID]Location, len(db.pending))
	maps.Copy(rest, db.pending)
	db.pending = rest
	rebuild := db.filterWanted() && (db.filter == nil || db.filter.full())
	db.mu.Unlock()
	if rebuild {
		_ = db.buildFilter() // failure leaves lookups exact, just slower
	}
	return nil
}

// mergeRangeRecords is about how many records one pass of a merge
// collects and sorts (5.5 MB of them): a merge of a cold node's 700000
// entries built all of them at once, 60 MB.
const mergeRangeRecords = 1 << 16

// idRange returns the bounds of the r-th of n equal ranges of chunk ids,
// by their leading 32 bits: [lo, hi), hi = 1<<32 for the last.
func idRange(r, n int) (lo, hi uint64) {
	return uint64(r) << 32 / uint64(n), uint64(r+1) << 32 / uint64(n)
}

// mergeRec is one chunk tree record: key (chunk id, pack number), then value.
type mergeRec [chunkKeySize + chunkValueSize]byte

// pendingPacks lists the pending packs, counts their entries and returns
// the size of the database file.
func (db *DB) pendingPacks() (packIDs []chunk.ID, total int, size int64, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		packsB := tx.Bucket(bucketPacks)
		return tx.Bucket(bucketPending).ForEach(func(pack, _ []byte) error {
			v := packsB.Get(pack)
			if v == nil || len(pack) != chunk.IDSize {
				return fmt.Errorf("%w: pending pack %x has no record", ErrCorrupt, pack)
			}
			body, _, err := decodePackValue(v)
			if err != nil {
				return fmt.Errorf("pack %x: %w", pack, err)
			}
			packIDs = append(packIDs, chunk.ID(pack))
			total += len(body) / packEntrySize
			return nil
		})
	})
	return packIDs, total, size, err
}

// pendingRecords returns the chunk tree records of packs whose chunk ids
// lead with 32 bits in [lo, hi), sorted by key: sorted inserts fill each
// leaf once instead of revisiting it.
func (db *DB) pendingRecords(packIDs []chunk.ID, lo, hi uint64) (recs []mergeRec, err error) {
	inRange := func(entry []byte) bool {
		lead := uint64(binary.BigEndian.Uint32(entry))
		return lead >= lo && lead < hi
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		packsB := tx.Bucket(bucketPacks)
		bodies := make([][]byte, 0, len(packIDs))
		nos := make([][packNoSize]byte, 0, len(packIDs))
		n := 0
		for _, pack := range packIDs {
			v := packsB.Get(pack[:])
			if v == nil {
				bodies = append(bodies, nil)
				nos = append(nos, [packNoSize]byte{})
				continue // removed since the merge listed it (RemovePack)
			}
			body, _, err := decodePackValue(v)
			if err != nil {
				return fmt.Errorf("pack %s: %w", pack, err)
			}
			bodies = append(bodies, body)
			nos = append(nos, [packNoSize]byte(packNumber(v)))
			for e := body; len(e) > 0; e = e[packEntrySize:] {
				if inRange(e) {
					n++
				}
			}
		}
		// Counted first: appending 84-byte records one by one copied them
		// over and over as the slice grew (0.13 s of CPU per GiB pushed).
		recs = make([]mergeRec, 0, n)
		for i := range packIDs {
			for body := bodies[i]; len(body) > 0; body = body[packEntrySize:] {
				if !inRange(body) {
					continue
				}
				var r mergeRec
				copy(r[:], body[:chunk.IDSize])
				copy(r[chunk.IDSize:], nos[i][:])
				copy(r[chunkKeySize:], body[chunk.IDSize:packEntrySize])
				recs = append(recs, r)
			}
		}
		return nil
	})
	slices.SortFunc(recs, func(a, b mergeRec) int { return bytes.Compare(a[:chunkKeySize], b[:chunkKeySize]) })
	return recs, err
}

// mergeSliceBytes is how much of the chunk tree one merge transaction may
// rewrite, and so hold in memory as dirty pages and nodes. The leaves it
// touches lie scattered over the file, and the kernel maps 16 pages around
// each one faulted in (its commit faults each again, reading the header of
// the page it frees): 8 MiB of leaves kept most of a 142 MB file mapped
// until the transaction ended, 2 MiB about 30 MiB of it.
const mergeSliceBytes = 2 << 20

// mergeSlice returns how many of n sorted records one merge transaction
// writes, for a database of size bytes. n sorted random ids spread over
// the whole tree, so a slice of k of them touches about k/n of its leaves:
// k = n * budget / size. A slice is never so small that commits dominate,
// nor so large that its own new leaves overrun the budget.
func mergeSlice(n int, size int64) int {
	const lo, hi = 1024, 65536
	if size <= 0 {
		return hi
	}
	return int(min(hi, max(lo, int64(n)*mergeSliceBytes/size)))
}

// loadPending rebuilds the in-memory pending map after Open.
func (db *DB) loadPending(tx *bolt.Tx) error {
	packsB := tx.Bucket(bucketPacks)
	return tx.Bucket(bucketPending).ForEach(func(pack, _ []byte) error {
		v := packsB.Get(pack)
		if v == nil || len(pack) != chunk.IDSize {
			return fmt.Errorf("%w: pending pack %x has no record", ErrCorrupt, pack)
		}
		body, _, err := decodePackValue(v)
		if err != nil {
			return err
		}
		for ; len(body) > 0; body = body[packEntrySize:] {
			id := chunk.ID(body[:chunk.IDSize])
			if _, dup := db.pending[id]; !dup {
				db.pending[id] = decodeLocation(chunk.ID(pack), body[chunk.IDSize:])
			}
		}
		return nil
	})
}

func checkPack(p *PackRecord) error {
	if p.Pack.IsZero() {
		return fmt.Errorf("%w: zero pack id", ErrInvalidArgument)
	}
	if p.Size < 0 || p.Size >= MaxPackSize {
		return fmt.Errorf("%w: pack size %d out of range", ErrInvalidArgument, p.Size)
	}
	if len(p.Entries) > math.MaxUint32 {
		return fmt.Errorf("%w: %d entries", ErrInvalidArgument, len(p.Entries))
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

// encodePackValue stores a pack's size, its number and its entries sorted
// by chunk id, a chunk listed twice kept once (the first).
func encodePackValue(p *PackRecord, no uint32) []byte {
	order := make([]int, len(p.Entries))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(p.Entries[a].ID[:], p.Entries[b].ID[:]) })
	v := make([]byte, packHeaderSize, packHeaderSize+len(p.Entries)*packEntrySize)
	n := uint32(0)
	for k, i := range order {
		e := &p.Entries[i]
		if k > 0 && p.Entries[order[k-1]].ID == e.ID {
			continue
		}
		v = append(v, e.ID[:]...)
		v = binary.BigEndian.AppendUint64(v, e.BlockOffset)
		v = binary.BigEndian.AppendUint32(v, e.BlockLength)
		v = binary.BigEndian.AppendUint32(v, e.Offset)
		v = binary.BigEndian.AppendUint32(v, e.Length)
		n++
	}
	binary.BigEndian.PutUint64(v[0:], uint64(p.Size))
	binary.BigEndian.PutUint32(v[8:], n)
	binary.BigEndian.PutUint32(packNumber(v), no)
	return v
}

// packNumber returns the number of a pack value decodePackValue accepted
// (the header's last field), as the chunk tree's keys hold it.
func packNumber(v []byte) []byte { return v[packHeaderSize-packNoSize : packHeaderSize] }

// appendChunkKey appends to dst the chunk tree key of id in the pack
// numbered no.
func appendChunkKey(dst, id, no []byte) []byte {
	return append(append(dst, id[:chunk.IDSize]...), no...)
}

// decodePackValue returns the entry records (packEntrySize bytes each) and
// the size of a pack value.
func decodePackValue(v []byte) (entries []byte, size int64, err error) {
	if len(v) < packHeaderSize {
		return nil, 0, fmt.Errorf("%w: pack value of %d bytes", ErrCorrupt, len(v))
	}
	size = int64(binary.BigEndian.Uint64(v))
	n := binary.BigEndian.Uint32(v[8:])
	entries = v[packHeaderSize:]
	if uint64(len(entries)) != uint64(n)*packEntrySize || size < 0 || size >= MaxPackSize {
		return nil, 0, fmt.Errorf("%w: pack value of %d bytes for %d chunks, size %d", ErrCorrupt, len(v), n, size)
	}
	return entries, size, nil
}

func decodeLocation(pack chunk.ID, v []byte) Location {
	return Location{
		Pack:        pack,
		BlockOffset: binary.BigEndian.Uint64(v[0:]),
		BlockLength: binary.BigEndian.Uint32(v[8:]),
		Offset:      binary.BigEndian.Uint32(v[12:]),
		Length:      binary.BigEndian.Uint32(v[16:]),
	}
}

// Lookup returns a location of chunk id. When a chunk sits in several
// packs, which one is returned is unspecified.
func (db *DB) Lookup(id chunk.ID) (loc Location, ok bool, err error) {
	db.mu.RLock()
	loc, ok, absent := db.pendingOrAbsent(&id)
	db.mu.RUnlock()
	if ok || absent {
		return loc, ok, nil
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		loc, ok = lookup(tx.Bucket(bucketChunks).Cursor(), tx.Bucket(bucketPackNos).Cursor(), id)
		return nil
	})
	if err == nil && !ok {
		db.treeMisses.Add(1)
	}
	if err != nil {
		return Location{}, false, fmt.Errorf("lookup chunk %s: %w", id, err)
	}
	return loc, ok, nil
}

// LookupMany looks up ids, calling fn for each in order, in one read
// transaction per lookupSlice ids. fn must not write to db (bbolt would
// deadlock). Sorted ids touch the chunk tree in order, and a large call
// then holds little of it mapped (see sliced).
func (db *DB) LookupMany(ids []chunk.ID, fn func(i int, loc Location, ok bool)) error {
	db.ensureFilter()
	err := db.sliced(len(ids), func(tx *bolt.Tx, lo, hi int, moved func() bool) (int, error) {
		c, nos := tx.Bucket(bucketChunks).Cursor(), tx.Bucket(bucketPackNos).Cursor()
		recent := newRecentPacks(tx)
		for i := lo; i < hi; i++ {
			if loc, ok := recent.find(&ids[i], nil); ok {
				fn(i, loc, true)
				continue
			}
			db.mu.RLock()
			loc, ok, absent := db.pendingOrAbsent(&ids[i])
			db.mu.RUnlock()
			if !ok && !absent {
				loc, ok = lookup(c, nos, ids[i])
				if !ok {
					if moved() {
						return i, nil
					}
					db.treeMisses.Add(1)
				}
			}
			if ok { // pending or in the tree
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

func lookup(c, nos *bolt.Cursor, id chunk.ID) (Location, bool) {
	k, v := c.Seek(id[:])
	if len(k) != chunkKeySize || !bytes.Equal(k[:chunk.IDSize], id[:]) || len(v) != chunkValueSize {
		return Location{}, false
	}
	pack, ok := packOf(nos, k)
	if !ok {
		return Location{}, false // Check reports it
	}
	return decodeLocation(pack, v), true
}

// packOf returns the id of the pack a chunk tree key names, found with a
// cursor of the packnos bucket (Bucket.Get allocates a cursor per call:
// one allocation per chunk looked up).
func packOf(nos *bolt.Cursor, key []byte) (chunk.ID, bool) {
	no := key[chunk.IDSize:]
	k, p := nos.Seek(no)
	if !bytes.Equal(k, no) || len(p) != chunk.IDSize {
		return chunk.ID{}, false
	}
	return chunk.ID(p), true
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
func (db *DB) PackCount() (n int, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketPacks).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count packs: %w", err)
	}
	return n, nil
}

// ChunkCount returns the number of (chunk, pack) entries recorded, merged
// or pending. It walks the pack records.
func (db *DB) ChunkCount() (n int, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPacks).ForEach(func(_, v []byte) error {
			body, _, err := decodePackValue(v)
			n += len(body) / packEntrySize
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("count chunks: %w", err)
	}
	return n, nil
}

// RemovePack forgets a pack and the locations in it. Removing an unknown
// pack is a no-op. Index object names recorded by Ingest stay recorded:
// the caller removing packs (gc) owns that bookkeeping.
//
// A pending pack is merged first: the pending map keeps one location per
// chunk, and removing it in place could hide the chunk's other packs.
func (db *DB) RemovePack(pack chunk.ID) error {
	pending := false
	if err := db.bolt.View(func(tx *bolt.Tx) error {
		pending = tx.Bucket(bucketPending).Get(pack[:]) != nil
		return nil
	}); err != nil {
		return fmt.Errorf("remove pack %s: %w", pack, err)
	}
	if pending {
		if err := db.Merge(); err != nil {
			return fmt.Errorf("remove pack %s: %w", pack, err)
		}
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		packsB := tx.Bucket(bucketPacks)
		v := packsB.Get(pack[:])
		if v == nil {
			return nil
		}
		if tx.Bucket(bucketPending).Get(pack[:]) != nil {
			return fmt.Errorf("%w: pack became pending again", ErrCorrupt) // cannot happen: packs are added once
		}
		body, _, err := decodePackValue(v)
		if err != nil {
			return err
		}
		if err := deleteEntries(tx, body, packNumber(v)); err != nil {
			return err
		}
		return packsB.Delete(pack[:])
	})
	if err != nil {
		return fmt.Errorf("remove pack %s: %w", pack, err)
	}
	return nil
}

// deleteEntries deletes from the chunk tree the entries body (a pack
// value's) lists under pack number no, and the number.
func deleteEntries(tx *bolt.Tx, body, no []byte) error {
	chunks := tx.Bucket(bucketChunks)
	key := make([]byte, 0, chunkKeySize)
	for ; len(body) > 0; body = body[packEntrySize:] {
		if err := chunks.Delete(appendChunkKey(key[:0], body, no)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketPackNos).Delete(no)
}

// lookupSlice is how many ids LookupMany and FindLocalMany look up in one
// read transaction.
const lookupSlice = 1 << 15

// sliced calls view for [lo, hi) slices of n ids, each in its own read
// transaction. When there is more than one slice, the file pages touched
// are unmapped after each (see dropResident): a pull asks for every chunk
// of a file at once, sorted by id, so each slice reads a key range of the
// tree, and without the unmapping the whole tree, 99 MB for a 4 GiB memory
// file, stayed counted in the pull's RSS. Small calls (a push asks 2048 at
// a time, unsorted) keep their pages: refaulting them cost more than they
// weigh.
//
// view returns how far it got. It stops early, at an id it did not find,
// when moved reports that a merge has moved pending entries into the tree
// since the transaction began: the id may have left pending after the
// lookup's transaction was opened and before pending was asked. The rest
// of the slice is looked up again in a new transaction.
func (db *DB) sliced(n int, view func(tx *bolt.Tx, lo, hi int, moved func() bool) (int, error)) error {
	for lo := 0; lo < n; {
		hi := min(n, lo+lookupSlice)
		gen := db.merged.Load()
		moved := func() bool { return db.merged.Load() != gen }
		var next int
		err := db.bolt.View(func(tx *bolt.Tx) error {
			var err error
			next, err = view(tx, lo, hi, moved)
			return err
		})
		if err != nil {
			return err
		}
		// Many small lookups (a push asks a batch at a time) map as much
		// of the file as a few large ones: drop after every lookupSlice
		// ids in all.
		if n > lookupSlice || db.lookedUp.Add(int64(next-lo)) >= lookupSlice {
			db.lookedUp.Store(0)
			db.dropResident()
		}
		lo = next
	}
	return nil
}
