package objectstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore"
)

func newLocal(t *testing.T, dir string) *objectstore.Client {
	t.Helper()
	c, err := objectstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocal_ReservedNamesAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	c := newLocal(t, dir)
	ctx := t.Context()
	for _, k := range []string{".tmp-x", "a/.lock-b", ".lock-c/d"} {
		if _, err := c.PutBytes(ctx, k, []byte("x"), objectstore.PutOptions{}); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("put %q: %v", k, err)
		}
	}
	info, err := c.PutBytes(ctx, "a/b", []byte("1"), objectstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBytes(ctx, "a/b", []byte("2"), objectstore.PutOptions{IfMatch: info.ETag}); err != nil {
		t.Fatal(err)
	}
	// A short body fails and leaves no temp file.
	if _, err := c.Put(ctx, "a/short", bytes.NewReader([]byte("abc")), 10, objectstore.PutOptions{}); err == nil {
		t.Error("short body accepted")
	}
	// Foreign temp and lock files (a crashed writer) are not listed.
	if err := os.WriteFile(filepath.Join(dir, "a", ".tmp-zzz"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := c.List(ctx, "", func(i objectstore.ObjectInfo) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "a/b" {
		t.Errorf("list = %q", keys)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "a"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != ".lock-b,.tmp-zzz,b" {
		t.Errorf("dir holds %q", names)
	}
	if err := c.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", ".lock-b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file survived delete: %v", err)
	}
	// Deleting a "directory" key is a no-op, as on S3.
	if _, err := c.PutBytes(ctx, "p/q", []byte("1"), objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "p"); err != nil {
		t.Errorf("delete of a key prefix: %v", err)
	}
}

// TestLocal_ETagChangesOnSameSizeRewrite guards the ETag scheme against
// inode reuse and coarse kernel timestamps.
func TestLocal_ETagChangesOnSameSizeRewrite(t *testing.T) {
	c := newLocal(t, t.TempDir())
	seen := map[string]bool{}
	for i := range 300 {
		info, err := c.PutBytes(t.Context(), "k", []byte{byte(i)}, objectstore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[info.ETag] {
			t.Fatalf("etag %s repeated at write %d", info.ETag, i)
		}
		seen[info.ETag] = true
	}
}

// TestLocal_SeparateClientsShareConditions: clients opened separately on
// one folder (separate file descriptors, as separate processes would have)
// still see each other's conditions.
func TestLocal_SeparateClientsShareConditions(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range n {
		c := newLocal(t, dir)
		wg.Go(func() {
			_, err := c.PutBytes(t.Context(), "once", []byte(strconv.Itoa(i)), objectstore.PutOptions{IfNoneMatch: true})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, objectstore.ErrPreconditionFailed) {
				t.Error(err)
			}
			casIncrement(t.Context(), t, c, "counter")
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d create-only winners", wins)
	}
	data, _, err := newLocal(t, dir).GetBytes(t.Context(), "counter", 64)
	if err != nil || string(data) != strconv.Itoa(n) {
		t.Errorf("counter = %q, %v", data, err)
	}
}

// casIncrement adds one to the decimal counter at key (creating it).
func casIncrement(ctx context.Context, t testing.TB, c *objectstore.Client, key string) {
	for {
		data, info, err := c.GetBytes(ctx, key, 64)
		var opts objectstore.PutOptions
		v := 0
		switch {
		case errors.Is(err, objectstore.ErrNotFound):
			opts.IfNoneMatch = true
		case err != nil:
			t.Error(err)
			return
		default:
			if v, err = strconv.Atoi(string(data)); err != nil {
				t.Error(err)
				return
			}
			opts.IfMatch = info.ETag
		}
		_, err = c.PutBytes(ctx, key, []byte(strconv.Itoa(v+1)), opts)
		if err == nil {
			return
		}
		if !errors.Is(err, objectstore.ErrPreconditionFailed) {
			t.Error(err)
			return
		}
	}
}

const helperEnv = "EPOCH_OBJECTSTORE_HELPER_DIR"

// TestLocal_MultiProcessCAS runs If-Match increments from several
// processes on one folder: flock and link must hold across processes.
func TestLocal_MultiProcessCAS(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" {
		c := newLocal(t, dir)
		for range 25 {
			casIncrement(context.Background(), t, c, "counter")
		}
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	const procs = 4
	var wg sync.WaitGroup
	for range procs {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLocal_MultiProcessCAS$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("helper: %v\n%s", err, out)
			}
		})
	}
	wg.Wait()
	data, _, err := newLocal(t, dir).GetBytes(t.Context(), "counter", 64)
	if err != nil || string(data) != strconv.Itoa(procs*25) {
		t.Errorf("counter = %q, %v; want %d", data, err, procs*25)
	}
}

// TestLocal_SpoolIsLinked checks that the folder store takes a spool on its
// filesystem by a link, not a copy: the object is the spool's inode.
func TestLocal_SpoolIsLinked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("spools are linked on Linux only")
	}
	root := t.TempDir()
	c := newLocal(t, filepath.Join(root, "store"))
	if !c.TakesSpools(root) {
		t.Error("TakesSpools is false for a spool folder on the store's filesystem")
	}
	sp, err := objectstore.NewSpool(root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sp.Close() }()
	if _, err := sp.WriteString("pack bytes"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(t.Context(), "packs/p", sp, 10, objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
	spoolInfo, err := sp.Stat()
	if err != nil {
		t.Fatal(err)
	}
	objInfo, err := os.Stat(filepath.Join(root, "store", "packs", "p"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(spoolInfo, objInfo) {
		t.Error("the object is a copy of the spool, not the spool")
	}
}

// TestLocal_SpoolOtherFilesystem checks that a spool the folder store
// cannot link (another filesystem: /dev/shm against the test's temp dir)
// is copied instead, whole.
func TestLocal_SpoolOtherFilesystem(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "spool-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shm) })
	root := t.TempDir()
	shmInfo, err1 := os.Stat(shm)
	rootInfo, err2 := os.Stat(root)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if shmInfo.Sys().(*syscall.Stat_t).Dev == rootInfo.Sys().(*syscall.Stat_t).Dev {
		t.Skip("/dev/shm and the temp dir are one filesystem")
	}
	c := newLocal(t, root)
	if c.TakesSpools(shm) {
		t.Error("TakesSpools is true for a spool folder on another filesystem")
	}
	sp, err := objectstore.NewSpool(shm)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sp.Close() }()
	data := bytes.Repeat([]byte("spooled "), 100000)
	if _, err := sp.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(t.Context(), "packs/q", sp, int64(len(data)), objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "packs", "q"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied spool: %d bytes, %v", len(got), err)
	}
}

// TestSpoolWriter writes pieces of odd sizes through a spool's writer, with
// and without O_DIRECT (several buffers in flight), on the temp dir's
// filesystem and on tmpfs (which may refuse O_DIRECT: the writer then
// writes through the page cache), and reads back exactly what was written.
func TestSpoolWriter(t *testing.T) {
	dirs := []string{t.TempDir()}
	if shm, err := os.MkdirTemp("/dev/shm", "spool-test-"); err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(shm) })
		dirs = append(dirs, shm)
	}
	const buf = objectstore.SpoolBufferSize
	rng := rand.New(rand.NewPCG(3, 4))
	// Writers run one after another, so later ones get the buffers
	// earlier ones returned.
	for _, dir := range dirs {
		for _, direct := range []bool{false, true} {
			for _, pieces := range [][]int{{}, {1}, {4095}, {4096}, {8192, 1}, {100, 5000, 70000, 3, 65536}, {buf}, {buf - 1, 2}, {3*buf + 7, 5 * buf, 4096, 1}} {
				t.Run(fmt.Sprint(filepath.Base(dir), direct, pieces), func(t *testing.T) {
					sp, err := objectstore.NewSpool(dir)
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = sp.Close() }()
					w, err := sp.Writer(direct)
					if err != nil {
						t.Fatal(err)
					}
					var want []byte
					for _, n := range pieces {
						p := make([]byte, n)
						for i := range p {
							p[i] = byte(rng.Uint32())
						}
						if k, err := w.Write(p); err != nil || k != n {
							t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
						}
						want = append(want, p...)
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					if pos, err := sp.Seek(0, io.SeekCurrent); err != nil || pos != int64(len(want)) {
						t.Errorf("spool offset after Close: %d, %v; want %d", pos, err, len(want))
					}
					got := make([]byte, len(want)+1)
					k, err := sp.ReadAt(got, 0)
					if k != len(want) || !errors.Is(err, io.EOF) || !bytes.Equal(got[:k], want) {
						t.Fatalf("read back %d of %d bytes (%v), equal %v", k, len(want), err, bytes.Equal(got[:k], want))
					}
				})
			}
		}
	}
}
