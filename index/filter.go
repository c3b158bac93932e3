package index

import (
	"encoding/binary"
	"math/bits"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// treeFilter is a Bloom filter over the chunk ids in the chunk tree. A
// lookup of an id it rules out does not descend the tree.
//
// Why: a push asks for every chunk of the file it reads, and nearly all of
// a new file's chunks miss. Each miss still read a leaf of the tree through
// bbolt's mapping, and the kernel maps 16 pages around each page faulted
// in, so a few thousand misses kept the whole file mapped and counted in
// the pusher's RSS (about 100 MiB of a 142 MB index pushing 4 GiB of
// memory), and every fault costs CPU on a virtual machine.
//
// The filter is a superset of the tree: merges add the ids they move into
// the tree, under mu, in the same critical section that takes them out of
// pending; removals leave their ids in (a false positive only costs the
// descent). So an id that is neither pending nor in the filter, seen under
// one hold of mu, is in neither place.
//
// Chunk ids are BLAKE3 digests, so their bits serve as the hash values.
// filterBitsPerID bits per id and filterProbes probes give about 0.1 %
// false positives while the filter is within its capacity.
type treeFilter struct {
	words []uint64
	mask  uint64 // bit count - 1 (a power of two)
	n     int    // ids added, duplicates counted
	limit int    // n past which the filter is rebuilt larger
}

const (
	filterBitsPerID = 16
	filterProbes    = 6
	// filterMinIDs is the capacity of the smallest filter: 64 KiB of bits.
	filterMinIDs = 1 << 15
	// filterMaxBits caps the filter at 32 MiB. A tree of more than 16
	// million ids gets more false positives, each costing one descent.
	filterMaxBits = 1 << 28
)

// filterDropKeys is how many keys buildFilter reads between unmapping
// the pages it touched: about 1 MB of leaves.
const filterDropKeys = 1 << 14

// newTreeFilter returns an empty filter with room for twice n ids.
func newTreeFilter(n int) *treeFilter {
	capIDs := max(2*n, filterMinIDs)
	nbits := min(uint64(1)<<bits.Len64(uint64(capIDs*filterBitsPerID-1)), filterMaxBits)
	return &treeFilter{
		words: make([]uint64, nbits/64),
		mask:  nbits - 1,
		limit: int(nbits / filterBitsPerID),
	}
}

// hashes returns the two hashes whose combinations h1 + i*h2 are id's bit
// positions (double hashing; h2 odd, so the positions differ).
func (f *treeFilter) hashes(id *chunk.ID) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(id[0:]), binary.LittleEndian.Uint64(id[8:]) | 1
}

func (f *treeFilter) add(id *chunk.ID) {
	h1, h2 := f.hashes(id)
	for i := range uint64(filterProbes) {
		b := (h1 + i*h2) & f.mask
		f.words[b/64] |= 1 << (b % 64)
	}
	f.n++
}

// mayContain reports false only for an id never added.
func (f *treeFilter) mayContain(id *chunk.ID) bool {
	h1, h2 := f.hashes(id)
	for i := range uint64(filterProbes) {
		b := (h1 + i*h2) & f.mask
		if f.words[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// full reports whether the filter holds more ids than it was sized for.
func (f *treeFilter) full() bool { return f.n > f.limit }

// buildFilter builds a filter of the chunk tree as it is and installs it.
// The caller holds mergeMu, so no merge adds ids to the tree meanwhile;
// entries that leave pending before then are in the tree read here.
func (db *DB) buildFilter() error {
	var f *treeFilter
	err := db.bolt.View(func(tx *bolt.Tx) error {
		chunks := tx.Bucket(bucketChunks)
		f = newTreeFilter(chunks.Stats().KeyN)
		c := chunks.Cursor()
		i := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == chunkKeySize {
				f.add((*chunk.ID)(k[:chunk.IDSize]))
			}
			// The leaves lie scattered over the file; unmap them as
			// the scan goes, or it ends with the whole file mapped.
			if i++; i%filterDropKeys == 0 {
				dropMapped(tx)
			}
		}
		dropMapped(tx)
		return nil
	})
	if err != nil {
		return err
	}
	db.mu.Lock()
	db.filter = f
	db.mu.Unlock()
	return nil
}

// filterAfterMisses is how many lookups must have missed in the chunk
// tree before one builds the filter. Pushes of new content miss with
// nearly every chunk and reach it within their first 16 MiB; a pull asks
// for chunks the store holds, and a push of content the store holds (every
// VM save writes its memory again) finds its chunks: neither pays for a
// scan of the tree it would not use (a re-push of 1 GiB takes 0.4 s).
const filterAfterMisses = 4096

// filterWanted reports whether lookups have missed in the tree often
// enough for the filter to pay.
func (db *DB) filterWanted() bool { return db.treeMisses.Load() >= filterAfterMisses }

// filterBuilt reports whether the filter is in place.
func (db *DB) filterBuilt() bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.filter != nil
}

// ensureFilter builds the filter once it is wanted, unless a merge is under
// way: that merge builds it when it ends, and until then lookups descend
// the tree. Failure to build leaves lookups exact, just slower.
func (db *DB) ensureFilter() {
	if !db.filterWanted() || db.filterBuilt() || !db.mergeMu.TryLock() {
		return
	}
	defer db.mergeMu.Unlock()
	if !db.filterBuilt() { // built by a merge since the look above
		_ = db.buildFilter()
	}
}

// pendingOrAbsent returns id's pending location, or reports it absent when
// the filter rules it out of the chunk tree too. Neither means the tree
// must be asked. The caller holds mu (read).
func (db *DB) pendingOrAbsent(id *chunk.ID) (loc Location, ok, absent bool) {
	if loc, ok = db.pending[*id]; ok {
		return loc, true, false
	}
	return Location{}, false, db.filter != nil && !db.filter.mayContain(id)
}
