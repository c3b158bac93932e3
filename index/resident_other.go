//go:build !linux

package index

// dropResident is a no-op where madvise(MADV_DONTNEED) on a shared file
// mapping is not known to be harmless.
func (db *DB) dropResident() {}
