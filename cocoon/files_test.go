package cocoon

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const testID = "01JQ8Z6W7X3K4M5N6P7Q8R9S0T"

func mkSnapshotDir(t *testing.T, paths *Paths, files map[string]string) string {
	t.Helper()
	dir, err := paths.SnapshotDir(testID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSnapshotFiles(t *testing.T) {
	paths := NewPaths(t.TempDir())
	dir := mkSnapshotDir(t, paths, map[string]string{
		"state.json":    "{}",
		"config.json":   "{\"a\":1}",
		"memory-ranges": "",
		".hidden":       "x",
	})
	// A sparse file reports its apparent size.
	if err := os.Truncate(filepath.Join(dir, "memory-ranges"), 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("config.json", filepath.Join(dir, "link.json")); err != nil {
		t.Fatal(err)
	}
	got, err := SnapshotFiles(paths, testID)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileInfo{
		{".hidden", 1, 0o640},
		{"config.json", 7, 0o640},
		{"link.json", 7, 0o640},
		{"memory-ranges", 1 << 30, 0o640},
		{"state.json", 2, 0o640},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestSnapshotFiles_Refuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr error
	}{
		{"symlink outside", func(t *testing.T, dir string) {
			outside := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(outside, []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeSymlink},
		{"relative symlink escaping", func(t *testing.T, dir string) {
			if err := os.Symlink("../../db/snapshots.json", filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "../../db"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "../../db/snapshots.json"), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeSymlink},
		{"dangling symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("nowhere", filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeSymlink},
		{"symlink to dir itself", func(t *testing.T, dir string) {
			if err := os.Symlink(".", filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeSymlink},
		{"subdirectory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsupportedFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths := NewPaths(t.TempDir())
			dir := mkSnapshotDir(t, paths, map[string]string{"config.json": "{}"})
			tt.setup(t, dir)
			if _, err := SnapshotFiles(paths, testID); !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := SnapshotFiles(NewPaths(t.TempDir()), "../x"); !errors.Is(err, ErrInvalidSnapshotID) {
		t.Errorf("bad id: err = %v, want ErrInvalidSnapshotID", err)
	}
}

func TestHumanSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1<<20 - 1, "1.0 MiB"}, // would print as 1024.0 KiB
		{1 << 20, "1.0 MiB"},
		{3 << 29, "1.5 GiB"},
		{12 << 30, "12.0 GiB"},
		{5 << 40, "5.0 TiB"},
		{math.MaxInt64, "8.0 EiB"},
		{-1536, "-1.5 KiB"},
		{math.MinInt64, "-8.0 EiB"},
	}
	for _, tt := range tests {
		if got := HumanSize(tt.in); got != tt.want {
			t.Errorf("HumanSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
