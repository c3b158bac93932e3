//go:build !unix

package snapgen

import "testing"

func allocatedBytes(t *testing.T, path string) (int64, bool) { return 0, false }
