package index

import (
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// dropResident unmaps from this process the pages of the database file it
// has touched: bulk merges and lookups read every leaf of the chunk tree,
// and the kernel charges each mapped page to the process's RSS for as long
// as the mapping lasts (hundreds of MiB for a multi-GiB file). The pages
// stay in the page cache; the next access maps them again with a minor
// fault. Done inside a read transaction, which keeps bbolt from remapping
// the file meanwhile. Failure only means the pages stay mapped.
//
// Merge calls it after each transaction, AddLocalFile after each range of
// ids, and lookups after every lookupSlice ids, in one call or in many
// (see sliced): a push of a 4 GiB memory file that dropped the pages after
// every LookupMany took 44 s instead of 26 s, refaulting them, and one
// that never dropped them mapped the whole index when it re-pushed known
// content (every lookup a hit: peak RSS 252-272 -> 192 MiB).
func (db *DB) dropResident() {
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		dropMapped(tx)
		return nil
	})
}

// dropMapped is dropResident within tx, read or write: bbolt remaps the
// file only while a write transaction commits (and waits for readers to
// end), never while a transaction's function runs. Pages bbolt still points into (a write transaction's
// nodes refer to keys on the mapped pages) read the same bytes again:
// the mapping is shared and the page cache keeps them.
func dropMapped(tx *bolt.Tx) {
	addr, size := tx.DB().Info().Data, tx.Size()
	if addr != 0 && size > 0 {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED)
	}
}
