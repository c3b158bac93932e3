//go:build !unix

package index

import "os"

func inodeDev(os.FileInfo) (inode, dev uint64) { return 0, 0 }
