package registry_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// childEnv makes the test binary act as a pulling process (see TestMain).
const childEnv = "EPOCH_TEST_PULL_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(pullChild(spec))
	}
	os.Exit(m.Run())
}

// slowBackend delays every read so a pull is still running when killed.
type slowBackend struct {
	objectstore.Backend
	delay time.Duration
}

func (s slowBackend) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	time.Sleep(s.delay)
	return s.Backend.Get(ctx, key, off, n)
}

// pullChild pulls "STORE|CACHE|ROOT|NAME" slowly and exits 0 on success.
func pullChild(spec string) int {
	parts := strings.Split(spec, "|")
	b, err := objectstore.NewLocalBackend(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	client := objectstore.NewFromBackend(slowBackend{b, 20 * time.Millisecond}, "")
	r := registry.New(client, registry.WithCacheDir(parts[1]), registry.WithConcurrency(1))
	if _, err := r.Pull(context.Background(), cocoon.NewPaths(parts[2]), parts[3], "latest", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestPull_KilledMidway kills a pulling process with SIGKILL: the node has
// no snapshot dir and no record afterwards, and a rerun completes, reusing
// what the killed one fetched.
func TestPull_KilledMidway(t *testing.T) {
	ctx := context.Background()
	storeDir := t.TempDir()
	store, err := objectstore.NewLocal(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	src := cocoon.NewPaths(t.TempDir())
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 48 << 20, DiskSize: 4 << 20, Seed: 21})
	id, err := series.WriteSnapshot(src.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	// Small packs: many reads, so the child is surely mid-pull when killed.
	pusher := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithPackSize(1<<20))
	defer pusher.Close()
	if _, err := pusher.Push(ctx, src, "vm", "latest", nil); err != nil {
		t.Fatal(err)
	}

	dst := cocoon.NewPaths(t.TempDir())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{storeDir, t.TempDir(), dst.RootDir, "vm"}, "|"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the staging dir holds some fetched data.
	deadline := time.Now().Add(60 * time.Second)
	for staged(dst) <= 1<<20 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("child never started writing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	if dir, _ := dst.SnapshotDir(id); exists(dir) {
		t.Fatalf("killed pull left the snapshot dir %s", dir)
	}
	if ok, err := cocoon.SnapshotExists(dst, "vm"); err != nil || ok {
		t.Fatalf("killed pull left a record: %v %v", ok, err)
	}

	r := newRegistry(t, store)
	_, st, err := r.PullSnapshot(ctx, dst, "vm", "latest", registry.PullOptions{})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if st.ReusedBytes == 0 {
		t.Errorf("rerun reused nothing of the killed pull: %+v", st)
	}
	sameTree(t, src, dst, id, id)
	if n := staged(dst); n != 0 {
		t.Errorf("staging data left after the rerun: %d bytes", n)
	}
}

// staged returns the bytes in pull staging dirs under p.
func staged(p *cocoon.Paths) int64 {
	var total int64
	entries, _ := os.ReadDir(p.SnapshotDataDir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), cocoon.StagingPrefix) {
			continue
		}
		_ = filepath.Walk(filepath.Join(p.SnapshotDataDir, e.Name()), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				total += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
			return nil
		})
	}
	return total
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
