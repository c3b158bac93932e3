package cocoon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

const (
	// DefaultRootDir is Cocoon's root directory when COCOON_ROOT_DIR is unset.
	DefaultRootDir = "/var/lib/cocoon"
	// RootDirEnv names the environment variable Cocoon reads its root from.
	RootDirEnv = "COCOON_ROOT_DIR"

	// maxSnapshotIDLen bounds IDs: Cocoon's are 26 characters, and a bound
	// keeps hostile names from producing absurd paths.
	maxSnapshotIDLen = 64
	// blobHexLen is the length of a SHA-256 hex digest.
	blobHexLen   = 64
	lockFileName = "snapshots.lock"
)

var (
	// ErrInvalidSnapshotID is returned for a snapshot ID that could escape
	// the snapshot data directory or is not of the form [A-Za-z0-9_-]{1,64}.
	ErrInvalidSnapshotID = errors.New("invalid snapshot id")
	// ErrInvalidBlobHex is returned for a base image ID that is not 64
	// lowercase hex digits.
	ErrInvalidBlobHex = errors.New("invalid cloudimg blob id")
)

// Paths locates Cocoon's files under one root. Fields are exported so tests
// and unusual installs can point them elsewhere; NewPaths fills them.
type Paths struct {
	// RootDir is Cocoon's root, e.g. /var/lib/cocoon.
	RootDir string
	// SnapshotDBFile is <root>/snapshot/db/snapshots.json.
	SnapshotDBFile string
	// SnapshotDataDir holds one directory per snapshot ID: <root>/snapshot/localfile.
	SnapshotDataDir string
	// CloudimgBlobDir holds base images: <root>/cloudimg/blobs.
	CloudimgBlobDir string
}

// RootDirFromEnv returns COCOON_ROOT_DIR when set and non-empty, else DefaultRootDir.
func RootDirFromEnv() string {
	if dir := os.Getenv(RootDirEnv); dir != "" {
		return filepath.Clean(dir)
	}
	return DefaultRootDir
}

// NewPaths returns the layout under rootDir; an empty rootDir means DefaultRootDir.
func NewPaths(rootDir string) *Paths {
	if rootDir == "" {
		rootDir = DefaultRootDir
	}
	rootDir = filepath.Clean(rootDir)
	return &Paths{
		RootDir:         rootDir,
		SnapshotDBFile:  filepath.Join(rootDir, "snapshot", "db", "snapshots.json"),
		SnapshotDataDir: filepath.Join(rootDir, "snapshot", "localfile"),
		CloudimgBlobDir: filepath.Join(rootDir, "cloudimg", "blobs"),
	}
}

// SnapshotDir returns <SnapshotDataDir>/<id> after checking id with ValidateSnapshotID.
// IDs come from remote manifests, so nothing else may turn one into a path.
func (p *Paths) SnapshotDir(id string) (string, error) {
	if err := ValidateSnapshotID(id); err != nil {
		return "", err
	}
	return filepath.Join(p.SnapshotDataDir, id), nil
}

// LockFile returns the flock file beside the snapshot DB:
// <root>/snapshot/db/snapshots.lock.
func (p *Paths) LockFile() string {
	return filepath.Join(filepath.Dir(p.SnapshotDBFile), lockFileName)
}

// CloudimgBlobPath returns <CloudimgBlobDir>/<hex>.qcow2 after checking that
// hex is 64 lowercase hex digits.
func (p *Paths) CloudimgBlobPath(hex string) (string, error) {
	if !isLowerHex(hex, blobHexLen) {
		return "", fmt.Errorf("%w: %q", ErrInvalidBlobHex, truncate(hex))
	}
	return filepath.Join(p.CloudimgBlobDir, hex+".qcow2"), nil
}

// ValidateSnapshotID accepts [A-Za-z0-9_-]{1,64}: Cocoon's 26-character
// base32 IDs and a margin, but never a separator, "." or "..".
func ValidateSnapshotID(id string) error {
	if id == "" || len(id) > maxSnapshotIDLen {
		return fmt.Errorf("%w: %q has %d characters, want 1 to %d", ErrInvalidSnapshotID, truncate(id), len(id), maxSnapshotIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidSnapshotID, truncate(id), c)
		}
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// truncate keeps error messages short when the input is hostile.
func truncate(s string) string {
	const maxLen = 80
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "..."
}
