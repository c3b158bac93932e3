package cocoon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func stage(t *testing.T, paths *Paths, files map[string]string) string {
	t.Helper()
	tmp, err := NewStagingDir(paths, testID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(tmp), StagingPrefix+testID+"-") || filepath.Dir(tmp) != paths.SnapshotDataDir {
		t.Fatalf("staging dir %s not in %s with prefix", tmp, paths.SnapshotDataDir)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tmp
}

func TestInstallSnapshotDir(t *testing.T) {
	tests := []struct {
		name    string
		target  func(t *testing.T, target string) // prepares what is already there
		wantErr error
	}{
		{"no target", func(*testing.T, string) {}, nil},
		{"empty target is replaced", func(t *testing.T, target string) {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"non-empty target refused", func(t *testing.T, target string) {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(target, "old"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrSnapshotDirExists},
		{"file target refused", func(t *testing.T, target string) {
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrSnapshotDirExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths := NewPaths(t.TempDir())
			target, err := paths.SnapshotDir(testID)
			if err != nil {
				t.Fatal(err)
			}
			tt.target(t, target)
			tmp := stage(t, paths, map[string]string{"config.json": "{}", "state.json": "[]"})
			err = InstallSnapshotDir(context.Background(), paths, testID, tmp)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(tmp, "config.json")); err != nil {
					t.Errorf("staging dir not left in place: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{"config.json", "state.json"}) {
				t.Errorf("installed %v, want config.json and state.json only (no owner file)", names)
			}
			if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("staging dir still there: %v", err)
			}
		})
	}
}

func TestInstallSnapshotDir_RefusesBadInput(t *testing.T) {
	paths := NewPaths(t.TempDir())
	tmp := stage(t, paths, nil)
	outside := t.TempDir()
	nested := filepath.Join(tmp, "nested")
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id, tmp string
	}{
		{"bad id", "../x", tmp},
		{"tmp outside data dir", testID, outside},
		{"tmp nested deeper", testID, nested},
		{"tmp missing", testID, filepath.Join(paths.SnapshotDataDir, ".epoch-pull-gone")},
	}
	for _, tt := range tests {
		if err := InstallSnapshotDir(context.Background(), paths, tt.id, tt.tmp); err == nil {
			t.Errorf("%s: installed without error", tt.name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := InstallSnapshotDir(ctx, paths, testID, tmp); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(paths.SnapshotDataDir, testID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target created despite errors: %v", err)
	}
}

func TestCleanStaleStaging(t *testing.T) {
	paths := NewPaths(t.TempDir())
	live := stage(t, paths, map[string]string{"mem": "x"})

	// A pull whose process has exited: start and reap a child for a dead pid.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := stage(t, paths, nil)
	owner := fmt.Sprintf("pid %d\npidns %s\n", cmd.Process.Pid, pidNamespace())
	if err := os.WriteFile(filepath.Join(dead, stagingOwnerFile), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}

	// A pull from another PID namespace: its pid means nothing here, keep it.
	foreign := stage(t, paths, nil)
	owner = fmt.Sprintf("pid %d\npidns pid:[1]\n", cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(foreign, stagingOwnerFile), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}

	// An old one, even with a live owner, ages out.
	old := stage(t, paths, map[string]string{"mem": "x"})
	past := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{filepath.Join(old, "mem"), filepath.Join(old, stagingOwnerFile), old} {
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}

	// Not staging: a snapshot and an old unrelated dot-dir stay.
	snap := mkSnapshotDir(t, paths, map[string]string{"config.json": "{}"})
	other := filepath.Join(paths.SnapshotDataDir, ".other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, past, past); err != nil {
		t.Fatal(err)
	}

	removed, err := CleanStaleStaging(context.Background(), paths, 0)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{dead, old}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, p := range []string{live, foreign, snap, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	for _, p := range want {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}

	if removed, err := CleanStaleStaging(context.Background(), NewPaths(t.TempDir()), time.Hour); err != nil || removed != nil {
		t.Errorf("missing data dir: got %v, %v; want nil, nil", removed, err)
	}
}
