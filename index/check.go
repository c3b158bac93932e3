package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// maxCheckErrors bounds how many problems Check reports.
const maxCheckErrors = 10

// Check verifies the database: bbolt's own page consistency, the meta
// record, and that the buckets agree: every chunk location belongs to a
// known pack that lists it and lies within the pack's size; every local
// chunk belongs to a known file and lies within its size, mirrored by the
// per-file list; paths and files map one to one. Each problem wraps
// ErrCorrupt; at most 10 are reported. It reads the whole file in one
// read transaction, and also checks that the lookup filter, once built,
// rules out no chunk of the tree; merges wait until it returns.
func (db *DB) Check() error {
	var errs []error
	report := func(format string, args ...any) bool {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...))
		return len(errs) < maxCheckErrors
	}
	// No merge adds to the tree or the filter while they are compared.
	db.mergeMu.Lock()
	defer db.mergeMu.Unlock()
	db.mu.RLock()
	filter := db.filter
	db.mu.RUnlock()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if !report("bbolt: %v", err) {
				return nil
			}
		}
		if err := checkMeta(tx.Bucket(bucketMeta)); err != nil {
			errs = append(errs, err)
			return nil
		}
		checkPacks(tx, report)
		checkFilter(tx, filter, report)
		checkLocal(tx, report)
		checkDigests(tx, report)
		return nil
	})
	if err != nil {
		return fmt.Errorf("check index %s: %w", db.path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("check index %s: %w", db.path, errors.Join(errs...))
	}
	return nil
}

// checkFilter reports chunk ids of the tree that the lookup filter would
// rule out: lookups would miss them.
func checkFilter(tx *bolt.Tx, f *treeFilter, report func(string, ...any) bool) {
	if f == nil {
		return
	}
	c := tx.Bucket(bucketChunks).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == chunkKeySize && !f.mayContain((*chunk.ID)(k[:chunk.IDSize])) && !report("chunk %x is in the tree but ruled out by the lookup filter", k[:chunk.IDSize]) {
			return
		}
	}
}

func checkPacks(tx *bolt.Tx, report func(string, ...any) bool) {
	packs, chunks, pending, nos := tx.Bucket(bucketPacks), tx.Bucket(bucketChunks), tx.Bucket(bucketPending), tx.Bucket(bucketPackNos)
	_ = tx.Bucket(bucketDeleted).ForEach(func(k, _ []byte) error {
		if packs.Get(k) != nil && !report("deleted pack %x is still recorded", k) {
			return errStop
		}
		return nil
	})
	_ = pending.ForEach(func(k, _ []byte) error {
		if packs.Get(k) == nil && !report("pending pack %x has no record", k) {
			return errStop
		}
		return nil
	})
	listed := 0
	_ = packs.ForEach(func(k, v []byte) error {
		body, _, err := decodePackValue(v)
		if len(k) != chunk.IDSize || err != nil {
			if !report("pack %x: bad record: %v", k, err) {
				return errStop
			}
			return nil
		}
		// A pending pack's entries are in the chunk tree in part or not at
		// all (a merge writes key-range slices in separate transactions and
		// may have been interrupted); the ones that are must be right.
		isPending := pending.Get(k) != nil
		no := packNumber(v)
		if !bytes.Equal(nos.Get(no), k) && !report("pack %x: its number %x names another pack", k, no) {
			return errStop
		}
		key := make([]byte, 0, chunkKeySize)
		for ; len(body) > 0; body = body[packEntrySize:] {
			key = appendChunkKey(key[:0], body, no)
			got := chunks.Get(key)
			if isPending && got == nil {
				continue
			}
			listed++
			if !bytes.Equal(got, body[chunk.IDSize:packEntrySize]) &&
				!report("pack %x: chunk %x has no or another location", k, key[:chunk.IDSize]) {
				return errStop
			}
		}
		return nil
	})
	located := 0
	_ = chunks.ForEach(func(k, v []byte) error {
		located++
		if len(k) != chunkKeySize || len(v) != chunkValueSize {
			if !report("chunk entry of %d/%d bytes", len(k), len(v)) {
				return errStop
			}
			return nil
		}
		pack := nos.Get(k[chunk.IDSize:])
		pv := packs.Get(pack)
		if pv == nil {
			if !report("chunk %x points to unknown pack number %x", k[:chunk.IDSize], k[chunk.IDSize:]) {
				return errStop
			}
			return nil
		}
		_, size, err := decodePackValue(pv)
		if err != nil {
			return nil // reported above
		}
		if !bytes.Equal(packNumber(pv), k[chunk.IDSize:]) {
			return nil // reported above, as the pack's number naming another
		}
		off, n := binary.BigEndian.Uint64(v), uint64(binary.BigEndian.Uint32(v[8:]))
		if off > uint64(size) || n > uint64(size)-off {
			if !report("chunk %x: block [%d,+%d) past pack %x of %d bytes", k[:chunk.IDSize], off, n, pack, size) {
				return errStop
			}
		}
		return nil
	})
	if listed != located {
		report("merged packs list %d chunks, %d locations stored", listed, located)
	}
	_ = nos.ForEach(func(no, pack []byte) error {
		pv := packs.Get(pack)
		if (len(pv) < packHeaderSize || !bytes.Equal(packNumber(pv), no)) &&
			!report("pack number %x names pack %x, which has another number or none", no, pack) {
			return errStop
		}
		return nil
	})
}

func checkLocal(tx *bolt.Tx, report func(string, ...any) bool) {
	files, paths := tx.Bucket(bucketFiles), tx.Bucket(bucketPaths)
	local, fileChunks := tx.Bucket(bucketLocal), tx.Bucket(bucketFileChunks)
	nfiles := 0
	_ = files.ForEach(func(k, v []byte) error {
		nfiles++
		_, path, err := decodeFile(v)
		if err != nil || len(k) != fileNoSize {
			if !report("file record %x: %v", k, err) {
				return errStop
			}
			return nil
		}
		if !bytes.Equal(paths.Get([]byte(path)), k) && !report("file %d: path %q does not map back", binary.BigEndian.Uint64(k), path) {
			return errStop
		}
		return nil
	})
	if npaths := paths.Stats().KeyN; npaths != nfiles {
		report("%d paths for %d files", npaths, nfiles)
	}
	nlocal := 0
	fk := make([]byte, fileChunkKeyLen)
	_ = local.ForEach(func(k, v []byte) error {
		nlocal++
		if len(k) != localKeySize || len(v) != localValueSize {
			if !report("local entry of %d/%d bytes", len(k), len(v)) {
				return errStop
			}
			return nil
		}
		fv := files.Get(k[chunk.IDSize:])
		if fv == nil {
			if !report("local chunk %x points to unknown file %d", k[:chunk.IDSize], binary.BigEndian.Uint64(k[chunk.IDSize:])) {
				return errStop
			}
			return nil
		}
		val, path, err := decodeFile(fv)
		if err != nil {
			return nil // reported above
		}
		off, n := binary.BigEndian.Uint64(v), uint64(binary.BigEndian.Uint32(v[8:]))
		if off > uint64(val.Size) || n > uint64(val.Size)-off {
			if !report("local chunk %x: [%d,+%d) past %s of %d bytes", k[:chunk.IDSize], off, n, path, val.Size) {
				return errStop
			}
		}
		copy(fk, k[chunk.IDSize:])
		copy(fk[fileNoSize:], k[:chunk.IDSize])
		if fileChunks.Get(fk) == nil && !report("local chunk %x of %s missing from the file's list", k[:chunk.IDSize], path) {
			return errStop
		}
		return nil
	})
	if n := fileChunks.Stats().KeyN; n != nlocal {
		report("%d per-file chunk entries for %d local chunks", n, nlocal)
	}
}
