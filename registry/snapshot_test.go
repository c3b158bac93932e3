package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// sameTree checks that every file of snapshot id in root b equals root a's,
// byte for byte, with the same holes (allocated blocks within a page).
func sameTree(t *testing.T, a, b *cocoon.Paths, idA, idB string) {
	t.Helper()
	dirA, _ := a.SnapshotDir(idA)
	dirB, _ := b.SnapshotDir(idB)
	entries, err := os.ReadDir(dirA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadDir(dirB)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("pulled dir has %d files, pushed %d", len(got), len(entries))
	}
	for _, e := range entries {
		pa, pb := filepath.Join(dirA, e.Name()), filepath.Join(dirB, e.Name())
		sameFile(t, pa, pb)
		fa, _ := os.Stat(pa)
		fb, _ := os.Stat(pb)
		if fa.Mode().Perm() != fb.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v", e.Name(), fb.Mode().Perm(), fa.Mode().Perm())
		}
		ba := fa.Sys().(*syscall.Stat_t).Blocks
		bb := fb.Sys().(*syscall.Stat_t).Blocks
		// Slack for filesystem metadata: a file written out of order needs
		// more extent-tree blocks than one written front to back.
		if bb > ba+ba/100+64 {
			t.Errorf("%s: pulled file allocates %d blocks, source %d: holes were written", e.Name(), bb, ba)
		}
	}
}

func readDB(t *testing.T, p *cocoon.Paths) map[string]any {
	t.Helper()
	data, err := os.ReadFile(p.SnapshotDBFile)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSnapshot_PushPull(t *testing.T) {
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			src := cocoon.NewPaths(t.TempDir())
			series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 8 << 20, DiskSize: 2 << 20, Seed: 11})
			id, err := series.WriteSnapshot(src.RootDir)
			if err != nil {
				t.Fatal(err)
			}
			pusher := newRegistry(t, store)
			// Every recipe through the spool file a multi-GiB memory file's
			// takes; the puller reads what it wrote.
			pusher.SpoolRecipesFrom(1)
			if _, err := pusher.Push(ctx, src, "vm", "latest", nil); err != nil {
				t.Fatalf("Push: %v", err)
			}

			// A second node with an empty root, holding a foreign record.
			dst := cocoon.NewPaths(t.TempDir())
			other := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "other", MemorySize: 1 << 20, DiskSize: 1 << 20, Seed: 99})
			if _, err := other.WriteSnapshot(dst.RootDir); err != nil {
				t.Fatal(err)
			}
			before := readDB(t, dst)
			puller := newRegistry(t, store)
			m, st, err := puller.PullSnapshot(ctx, dst, "vm", "latest", registry.PullOptions{})
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			if m.SnapshotID != id {
				t.Fatalf("pulled id %s, want %s", m.SnapshotID, id)
			}
			if st.DownloadedBytes == 0 {
				t.Error("cold pull downloaded nothing")
			}
			sameTree(t, src, dst, id, id)
			after := readDB(t, dst)
			for k, v := range before["snapshots"].(map[string]any) {
				got, _ := json.Marshal(after["snapshots"].(map[string]any)[k])
				want, _ := json.Marshal(v)
				if !bytes.Equal(got, want) {
					t.Errorf("foreign record %s changed:\n got %s\nwant %s", k, got, want)
				}
			}
			srcRec, _ := json.Marshal(readDB(t, src)["snapshots"].(map[string]any)[id])
			var want, got map[string]any
			_ = json.Unmarshal(srcRec, &want)
			gotRec, _ := json.Marshal(after["snapshots"].(map[string]any)[id])
			_ = json.Unmarshal(gotRec, &got)
			for k, v := range want {
				if k == "data_dir" {
					continue
				}
				a, _ := json.Marshal(v)
				b, _ := json.Marshal(got[k])
				if !bytes.Equal(a, b) {
					t.Errorf("record field %s = %s, want %s", k, b, a)
				}
			}
			// Base images arrive read-only at the same path.
			for hex := range want["image_blob_ids"].(map[string]any) {
				p, _ := dst.CloudimgBlobPath(hex)
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatalf("base image not pulled: %v", err)
				}
				if fi.Mode().Perm()&0o222 != 0 {
					t.Errorf("base image is writable: %v", fi.Mode())
				}
				sp, _ := src.CloudimgBlobPath(hex)
				sameFile(t, sp, p)
			}

			// Revision 2 into the node holding revision 1: most comes from local files.
			series.Next(snapgen.MemoryChange{DirtyFraction: 0.02, MoveFraction: 0.01, ZeroFraction: 0.01}, 256<<10, 0.01)
			if _, err := series.WriteSnapshot(src.RootDir); err != nil {
				t.Fatal(err)
			}
			_, pushSt, err := pusher.PushSnapshot(ctx, src, "vm", "latest", nil)
			if err != nil {
				t.Fatal(err)
			}
			if pushSt.NewBytes*4 > pushSt.DataBytes {
				t.Errorf("revision 2 push: %d new of %d data bytes", pushSt.NewBytes, pushSt.DataBytes)
			}
			_, warm, err := puller.PullSnapshot(ctx, dst, "vm", "latest", registry.PullOptions{})
			if err != nil {
				t.Fatalf("warm pull: %v", err)
			}
			if warm.DownloadedBytes*3 > st.DownloadedBytes {
				t.Errorf("warm pull downloaded %d bytes, cold %d", warm.DownloadedBytes, st.DownloadedBytes)
			}
			sameTree(t, src, dst, id, id)
		})
	}
}

func TestPuller_ConcurrentEnsure(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	src := cocoon.NewPaths(t.TempDir())
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 4 << 20, DiskSize: 1 << 20, Seed: 5})
	id, err := series.WriteSnapshot(src.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newRegistry(t, store).Push(ctx, src, "vm", "", nil); err != nil {
		t.Fatal(err)
	}
	dst := cocoon.NewPaths(t.TempDir())
	reg := newRegistry(t, store)
	p := registry.NewPullerFromRegistry(reg, dst.RootDir)
	before := store.Stats()
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { errs[i] = p.EnsureSnapshot(ctx, "vm") })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	manifestReads := store.Stats().GetRequests - before.GetRequests
	sameTree(t, src, dst, id, id)
	// One pull: a second one would read every object again.
	if err := p.EnsureSnapshot(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if got := store.Stats().GetRequests - before.GetRequests; got != manifestReads {
		t.Errorf("EnsureSnapshot of a present snapshot sent %d requests", got-manifestReads)
	}
	// A new revision of the tag is pulled by EnsureSnapshotTag.
	series.Next(snapgen.MemoryChange{DirtyFraction: 0.05}, 0, 0)
	if _, err := series.WriteSnapshot(src.RootDir); err != nil {
		t.Fatal(err)
	}
	if _, err := newRegistry(t, store).Push(ctx, src, "vm", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureSnapshot(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureSnapshotTag(ctx, "vm", "latest"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst, id, id)
	names, err := p.ListRemote(ctx)
	if err != nil || len(names) != 1 || names[0] != "vm" {
		t.Fatalf("ListRemote = %v, %v", names, err)
	}
}

// TestPull_HostileManifest: a manifest naming ../../etc/passwd or an
// absolute path is refused and writes nothing.
func TestPull_HostileManifest(t *testing.T) {
	ctx := context.Background()
	store := objectstoretest.Stores(t)["local"]
	r := newRegistry(t, store)
	m := pushedManifest(t, r, "vm", "latest")
	for _, bad := range []struct{ field, value string }{
		{"filename", "../../etc/passwd"},
		{"filename", "/etc/passwd"},
		{"snapshotId", "../../etc"},
		{"snapshotId", "/abs"},
	} {
		t.Run(bad.field+"="+bad.value, func(t *testing.T) {
			raw, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			_ = json.Unmarshal(raw, &doc)
			if bad.field == "filename" {
				doc["layers"].([]any)[0].(map[string]any)["filename"] = bad.value
			} else {
				doc["snapshotId"] = bad.value
			}
			raw, _ = json.Marshal(doc)
			// Written straight to the store, as a hostile bucket would hold it.
			if _, err := store.PutBytes(ctx, "manifests/vm/latest.json", raw, objectstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			dst := cocoon.NewPaths(root)
			if _, err := r.Pull(ctx, dst, "vm", "latest", nil); err == nil {
				t.Fatal("hostile manifest pulled")
			}
			var files []string
			_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) != 0 {
				t.Fatalf("refused pull wrote %v", files)
			}
		})
	}
	if _, err := r.Pull(ctx, cocoon.NewPaths(t.TempDir()), "nope", "latest", nil); !errors.Is(err, registry.ErrManifestNotFound) {
		t.Fatalf("unknown name: %v", err)
	}
}

// TestSnapshot_QemuImgOverlay pushes and pulls a real qcow2 overlay made by
// qemu-img over the snapshot's base image (skipped without qemu-img).
func TestSnapshot_QemuImgOverlay(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	ctx := context.Background()
	for name, store := range objectstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			src := cocoon.NewPaths(t.TempDir())
			series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 2 << 20, DiskSize: 1 << 20, Seed: 31})
			id, err := series.WriteSnapshot(src.RootDir)
			if err != nil {
				t.Fatal(err)
			}
			// A raw base image, and a qcow2 overlay over it as Cocoon makes one:
			// absolute backing path into cloudimg/blobs.
			base := filepath.Join(t.TempDir(), "base.raw")
			if err := os.WriteFile(base, bytes.Repeat([]byte("base image block "), 1<<16), 0o644); err != nil {
				t.Fatal(err)
			}
			dir, _ := src.SnapshotDir(id)
			overlay := filepath.Join(dir, "overlay.qcow2")
			_ = os.Remove(overlay)
			run := func(name string, args ...string) {
				if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
					t.Fatalf("%s %v: %v: %s", name, args, err, out)
				}
			}
			run(qemuImg, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay, "64M")
			if qemuIO, err := exec.LookPath("qemu-io"); err == nil {
				run(qemuIO, "-c", "write -P 0xab 0 1M", "-c", "write -P 0x11 8M 256k", overlay)
			}
			if _, err := newRegistry(t, store).Push(ctx, src, "vm", "latest", nil); err != nil {
				t.Fatal(err)
			}
			dst := cocoon.NewPaths(t.TempDir())
			if _, err := newRegistry(t, store).Pull(ctx, dst, "vm", "latest", nil); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, dst, id, id)
			pulled, _ := dst.SnapshotDir(id)
			run(qemuImg, "check", "-q", "-U", filepath.Join(pulled, "overlay.qcow2"))
		})
	}
}
