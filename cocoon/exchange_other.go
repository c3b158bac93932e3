//go:build !linux

package cocoon

import "errors"

// exchangeDirs needs renameat2, which only Linux has; Cocoon runs on Linux.
func exchangeDirs(_, _ string) error { return errors.ErrUnsupported }
