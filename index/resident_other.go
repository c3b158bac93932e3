//go:build !linux

package index

import bolt "go.etcd.io/bbolt"

// dropResident is a no-op where madvise(MADV_DONTNEED) on a shared file
// mapping is not known to be harmless.
func (db *DB) dropResident() {}

// dropMapped is dropResident within tx; a no-op here.
func dropMapped(*bolt.Tx) {}
