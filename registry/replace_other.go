//go:build !linux

package registry

import "os"

// replaceFile makes tmp visible at dest atomically, with a rename (the
// exchange that defers the old file's removal is Linux's renameat2).
func (r *Registry) replaceFile(tmp, dest string) error {
	return os.Rename(tmp, dest)
}
