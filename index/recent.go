package index

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// recentSlots is how many pack tables a lookup keeps at hand. A file's
// chunks come from the packs of the push that first stored them, with the
// few pages a later revision rewrote in packs of their own; four tables
// let a lookup step out to such a pack and back without losing the one it
// walks.
const recentSlots = 4

// recentPacks holds the tables of the packs a run of lookups last found
// chunks in, most recent first. Chunks are mostly looked up in the order
// they were packed (the same memory written again to a new file, the
// unchanged pages of a new revision, a pull of a file), so the next id is
// likely in the same pack, and a binary search of its table, which the
// transaction maps already, costs a fraction of a descent of the chunk
// tree and the lock around the pending entries.
//
// The tables are slices of one read transaction's view: a recentPacks
// lives and dies inside it. A pack table and the chunk tree are written in
// the same transactions (a pack's entries are in the tree, pending, or
// staged, for as long as its table is there), so an answer from a table is
// an answer the tree would give, or one it will give once merged.
//
// Lookups in no particular order (chunks of many packs, shuffled, or sorted
// by id as a pull asks for its unique chunks) must not pay for tables they
// never use: a pack's table is read only when recentAfter ids in a row were
// found in it elsewhere, and the tables are dropped after a run of ids none
// of them held. With two in a row, a cold pull of a 4 GiB memory file
// (ids sorted, about 130 packs) read a table every few hundred ids and
// kept 30 MiB more of the index mapped (peak RSS 170 -> 200 MiB).
type recentPacks struct {
	packs  *bolt.Bucket
	n      int
	slot   [recentSlots]recentPack
	prev   chunk.ID // the pack the last id missing from the tables was found in
	run    int      // ids in a row found in prev
	misses int      // ids in a row the tables did not hold
}

// recentAfter is how many ids in a row found in one pack outside the
// tables make its table read.
const recentAfter = 3

// recentDropAfter is the run of ids missing from the tables after which
// they are dropped.
const recentDropAfter = recentSlots

type recentPack struct {
	id   chunk.ID
	body []byte // entries (packEntrySize bytes each) sorted by chunk id
}

func newRecentPacks(tx *bolt.Tx) recentPacks {
	return recentPacks{packs: tx.Bucket(bucketPacks)}
}

// find returns the location of id in the most recent table that lists it
// and whose pack accept takes (nil accepts any).
func (r *recentPacks) find(id *chunk.ID, accept func(pack chunk.ID) bool) (Location, bool) {
	for i := range r.n {
		p := &r.slot[i]
		e, ok := searchEntries(p.body, id)
		if !ok || (accept != nil && !accept(p.id)) {
			continue
		}
		loc := decodeLocation(p.id, e)
		r.front(i)
		r.misses = 0
		return loc, true
	}
	return Location{}, false
}

// foundElsewhere tells that the id find missed was found in pack (in the
// tree or pending).
func (r *recentPacks) foundElsewhere(pack chunk.ID) {
	if r.misses++; r.misses >= recentDropAfter {
		r.n, r.misses = 0, 0
	}
	if pack != r.prev {
		r.prev, r.run = pack, 0
	}
	if r.run++; r.run >= recentAfter {
		r.add(pack)
		r.run = 0
	}
}

// add makes pack's table the most recent one, reading it if it is not at
// hand. A table that does not decode is left out: the tree answers, and
// Check reports the table.
func (r *recentPacks) add(pack chunk.ID) {
	for i := range r.n {
		if r.slot[i].id == pack {
			r.front(i)
			return
		}
	}
	body, _, err := decodePackValue(r.packs.Get(pack[:]))
	if err != nil {
		return
	}
	if r.n < recentSlots {
		r.n++
	}
	r.slot[r.n-1] = recentPack{id: pack, body: body}
	r.front(r.n - 1)
}

// front moves slot i to the front, keeping the order of the others.
func (r *recentPacks) front(i int) {
	if i == 0 {
		return
	}
	p := r.slot[i]
	copy(r.slot[1:i+1], r.slot[:i])
	r.slot[0] = p
}

// searchEntries returns the location bytes of id in a pack table's
// entries, which are sorted by id.
func searchEntries(body []byte, id *chunk.ID) ([]byte, bool) {
	lo, hi := 0, len(body)/packEntrySize
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		e := body[m*packEntrySize : (m+1)*packEntrySize]
		switch c := bytes.Compare(e[:chunk.IDSize], id[:]); {
		case c == 0:
			return e[chunk.IDSize:], true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil, false
}
