package cocoon

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewPaths(t *testing.T) {
	tests := []struct {
		root string
		want Paths
	}{
		{"", Paths{
			RootDir:         "/var/lib/cocoon",
			SnapshotDBFile:  "/var/lib/cocoon/snapshot/db/snapshots.json",
			SnapshotDataDir: "/var/lib/cocoon/snapshot/localfile",
			CloudimgBlobDir: "/var/lib/cocoon/cloudimg/blobs",
		}},
		{"/data/cocoon/", Paths{
			RootDir:         "/data/cocoon",
			SnapshotDBFile:  "/data/cocoon/snapshot/db/snapshots.json",
			SnapshotDataDir: "/data/cocoon/snapshot/localfile",
			CloudimgBlobDir: "/data/cocoon/cloudimg/blobs",
		}},
	}
	for _, tt := range tests {
		got := NewPaths(tt.root)
		if *got != tt.want {
			t.Errorf("NewPaths(%q) = %+v, want %+v", tt.root, *got, tt.want)
		}
		if want := filepath.Join(tt.want.RootDir, "snapshot/db/snapshots.lock"); got.LockFile() != want {
			t.Errorf("LockFile() = %q, want %q", got.LockFile(), want)
		}
	}
}

func TestRootDirFromEnv(t *testing.T) {
	t.Setenv(RootDirEnv, "")
	if got := RootDirFromEnv(); got != DefaultRootDir {
		t.Errorf("unset: got %q, want %q", got, DefaultRootDir)
	}
	t.Setenv(RootDirEnv, "/srv/cocoon/")
	if got := RootDirFromEnv(); got != "/srv/cocoon" {
		t.Errorf("set: got %q, want /srv/cocoon", got)
	}
}

func TestPaths_SnapshotDir(t *testing.T) {
	p := NewPaths("/r")
	tests := []struct {
		id      string
		wantErr bool
	}{
		{"01JQ8Z6W7X3K4M5N6P7Q8R9S0T", false}, // Cocoon's 26-char base32
		{"a", false},
		{"snap_1-x", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a", 65), true},
		{"", true},
		{"..", true},
		{".", true},
		{"../x", true},
		{"/abs", true},
		{"a/b", true},
		{"a\\b", true},
		{"a.b", true},
		{"a b", true},
		{"a\x00", true},
	}
	for _, tt := range tests {
		got, err := p.SnapshotDir(tt.id)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidSnapshotID) {
				t.Errorf("SnapshotDir(%q) err = %v, want ErrInvalidSnapshotID", tt.id, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("SnapshotDir(%q): %v", tt.id, err)
			continue
		}
		if want := "/r/snapshot/localfile/" + tt.id; got != want {
			t.Errorf("SnapshotDir(%q) = %q, want %q", tt.id, got, want)
		}
	}
}

func TestPaths_CloudimgBlobPath(t *testing.T) {
	p := NewPaths("/r")
	good := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		hex     string
		wantErr bool
	}{
		{good, false},
		{strings.ToUpper(good), true},
		{good[:63], true},
		{good + "0", true},
		{"", true},
		{"../" + good[:61], true},
		{good[:63] + "g", true},
	}
	for _, tt := range tests {
		got, err := p.CloudimgBlobPath(tt.hex)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidBlobHex) {
				t.Errorf("CloudimgBlobPath(%q) err = %v, want ErrInvalidBlobHex", tt.hex, err)
			}
			continue
		}
		if want := "/r/cloudimg/blobs/" + good + ".qcow2"; err != nil || got != want {
			t.Errorf("CloudimgBlobPath(%q) = %q, %v; want %q", tt.hex, got, err, want)
		}
	}
}
