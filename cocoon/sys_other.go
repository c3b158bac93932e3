//go:build !unix

package cocoon

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// lockFile is unsupported: Cocoon runs on Linux and its lock is flock(2).
func lockFile(_ context.Context, path string, _ bool) (func() error, error) {
	return nil, fmt.Errorf("lock %s: %w", path, errors.ErrUnsupported)
}

func renameDir(from, to string) error {
	return os.Rename(from, to)
}

func isTargetExists(err error) bool {
	return errors.Is(err, os.ErrExist)
}

// pidAlive is conservative where it cannot tell: staging dirs then age out.
func pidAlive(int) bool { return true }

func pidNamespace() string { return "" }
