package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
)

// newCocoonRoot makes a Cocoon root holding revision 0 of a generated VM.
func newCocoonRoot(t *testing.T, series *snapgen.Series) (string, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "cocoon")
	// Start from an empty snapshot DB (snapgen adds a foreign record to a
	// new one).
	db := filepath.Join(root, "snapshot", "db", "snapshots.json")
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, db, []byte(`{"snapshots":{},"names":{}}`))
	id, err := series.WriteSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, id
}

func snapshotDir(root, id string) string {
	return filepath.Join(root, "snapshot", "localfile", id)
}

// snapshotNames reads the name -> id map of a root's snapshot DB.
func snapshotNames(t *testing.T, root string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "snapshot", "db", "snapshots.json"))
	if err != nil {
		t.Fatal(err)
	}
	var db struct {
		Names map[string]string `json:"names"`
	}
	if err := json.Unmarshal(data, &db); err != nil {
		t.Fatal(err)
	}
	return db.Names
}

func TestPushPullSnapshot(t *testing.T) {
	c := newCLI(t)
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 8 << 20, DiskSize: 4 << 20, Seed: 7})
	rootA, id := newCocoonRoot(t, series)
	var raw int64
	for _, n := range listFiles(t, snapshotDir(rootA, id)) {
		fi, err := os.Stat(filepath.Join(snapshotDir(rootA, id), n))
		if err != nil {
			t.Fatal(err)
		}
		raw += fi.Size()
	}

	var push summary
	c.jsonOK(&push, "--root", rootA, "push", "vm")
	if push.Name != "vm" || push.Tag != "latest" || *push.RawBytes < raw || *push.UploadedBytes == 0 {
		t.Fatalf("push: %+v (raw %d)", push, raw)
	}

	// Another node: the root comes from COCOON_ROOT_DIR.
	rootB := filepath.Join(t.TempDir(), "cocoon-b")
	c.env["COCOON_ROOT_DIR"] = rootB
	c.env["EPOCH_CACHE_DIR"] = filepath.Join(t.TempDir(), "cache-b")
	var pull summary
	c.jsonOK(&pull, "pull", "vm")
	if pull.Digest != push.Digest || *pull.DownloadedBytes == 0 {
		t.Fatalf("pull: %+v, push digest %s", pull, push.Digest)
	}
	sameTree(t, snapshotDir(rootA, id), snapshotDir(rootB, id))
	sameTree(t, filepath.Join(rootA, "cloudimg", "blobs"), filepath.Join(rootB, "cloudimg", "blobs"))
	if snapshotNames(t, rootB)["vm"] != id {
		t.Fatalf("root B names: %v", snapshotNames(t, rootB))
	}

	// The next save pushes little, as hibernate, and pulls little on node B.
	series.Next(snapgen.MemoryChange{DirtyFraction: 0.02, MoveFraction: 0.02}, 256<<10, 0.01)
	if _, err := series.WriteSnapshot(rootA); err != nil {
		t.Fatal(err)
	}
	var push2 summary
	c.jsonOK(&push2, "--root", rootA, "--cache-dir", c.env["HOME"]+"/cache", "push", "vm", "-t", "hibernate")
	if push2.Tag != "hibernate" || *push2.UploadedBytes*4 > *push.UploadedBytes {
		t.Fatalf("second push uploaded %d, first %d", *push2.UploadedBytes, *push.UploadedBytes)
	}
	var pull2 summary
	c.jsonOK(&pull2, "pull", "vm:hibernate", "--name", "vm-restored")
	if *pull2.DownloadedBytes*4 > *pull.DownloadedBytes || *pull2.ReusedBytes == 0 {
		t.Fatalf("second pull downloaded %d (first %d), reused %d", *pull2.DownloadedBytes, *pull.DownloadedBytes, *pull2.ReusedBytes)
	}
	names := snapshotNames(t, rootB)
	if names["vm-restored"] == "" {
		t.Fatalf("root B names: %v", names)
	}
	sameTree(t, snapshotDir(rootA, id), snapshotDir(rootB, names["vm-restored"]))

	var inspect struct {
		Stats struct {
			Layers []struct {
				Filename  string `json:"filename"`
				ZeroBytes int64  `json:"zero_bytes"`
			} `json:"layers"`
		} `json:"stats"`
	}
	c.jsonOK(&inspect, "inspect", "vm:hibernate")
	var files []string
	for _, l := range inspect.Stats.Layers {
		files = append(files, l.Filename)
		if l.Filename == "memory-ranges" && l.ZeroBytes == 0 {
			t.Fatalf("memory-ranges without zero bytes")
		}
	}
	if !strings.Contains(strings.Join(files, ","), "memory-ranges") {
		t.Fatalf("inspect files %v", files)
	}
	c.ok("check")

	// An unknown snapshot, and a bad tag.
	c.fails(1, "nosuch", "--root", rootA, "push", "nosuch")
	c.fails(2, "vm:../x", "--root", rootA, "push", "vm:../x")
	c.fails(2, "two tags", "--root", rootA, "push", "vm:a", "-t", "b")
	c.fails(2, "--name", "pull", "vm", "--name", "Bad/Name")
}
