package registry_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// hostileFixture is a local store holding one small snapshot vm:latest and
// one blob, whose objects the cases below corrupt (and put back).
type hostileFixture struct {
	dir      string // store folder
	src      *cocoon.Paths
	store    *objectstore.Client
	m        *manifest.Manifest
	raw      []byte // vm:latest as pushed
	blob     string // digest of the pushed blob
	blobSize int64
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := objectstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := cocoon.NewPaths(t.TempDir())
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "vm", MemorySize: 1 << 20, DiskSize: 256 << 10, Seed: 81})
	if _, err := series.WriteSnapshot(src.RootDir); err != nil {
		t.Fatal(err)
	}
	r := newRegistry(t, store)
	m, err := r.Push(ctx, src, "vm", "latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.ManifestJSON(ctx, "vm", "latest")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "blob")
	writeImage(t, path, 100, 3)
	digest, size, err := r.PushBlob(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return &hostileFixture{dir: dir, src: src, store: store, m: m, raw: raw, blob: digest, blobSize: size}
}

// replace writes data under key for the rest of the (sub)test, then puts
// back what was there (or deletes it).
func (f *hostileFixture) replace(t *testing.T, key string, data []byte) {
	t.Helper()
	ctx := context.Background()
	old, _, err := f.store.GetBytes(ctx, key, 1<<30)
	existed := err == nil
	if _, err := f.store.PutBytes(ctx, key, data, objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if existed {
			_, _ = f.store.PutBytes(ctx, key, old, objectstore.PutOptions{})
		} else {
			_ = f.store.Delete(ctx, key)
		}
	})
}

// keysUnder lists the keys under prefix.
func (f *hostileFixture) keysUnder(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	if err := f.store.List(context.Background(), prefix, func(oi objectstore.ObjectInfo) error {
		out = append(out, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// manifestWith writes vm:latest as the pushed manifest changed by edit
// (on its generic JSON form).
func (f *hostileFixture) manifestWith(t *testing.T, edit func(doc map[string]any)) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(f.raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f.replace(t, "manifests/vm/latest.json", data)
}

func recipeKeyOf(id string) string { return "blobs/recipes/" + id[:2] + "/" + id }

// refuses runs every pull of the hostile store (snapshot, blob and
// manifest, as asked) from a fresh node and checks each one fails with an
// error mentioning one of want and writes nothing outside its data dirs:
// the Cocoon root and the blob destination folder are as before.
func (f *hostileFixture) refuses(t *testing.T, snapshot, blob, man bool, want ...string) {
	t.Helper()
	ctx := context.Background()
	r := newRegistry(t, f.store) // a fresh node: it syncs the store's index objects
	wantIn := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s of a hostile store succeeded", what)
			return
		}
		for _, w := range want {
			if strings.Contains(err.Error(), w) {
				t.Logf("%s: %v", what, err)
				return
			}
		}
		t.Errorf("%s: error %q names none of %q", what, err, want)
	}
	if snapshot {
		f.refusesSnapshot(t, ctx, r, wantIn)
	}
	if blob {
		outDir := t.TempDir()
		err := r.PullBlob(ctx, f.blob, filepath.Join(outDir, "out"))
		wantIn("PullBlob", err)
		if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
			t.Errorf("refused PullBlob left %v", entries)
		}
	}
	if man {
		_, err := r.PullManifest(ctx, "vm", "latest")
		wantIn("PullManifest", err)
	}
}

// refusesSnapshot is the snapshot half of refuses: PullSnapshot into a fresh
// Cocoon root must fail (checked by wantIn) and leave the root as it was.
func (f *hostileFixture) refusesSnapshot(t *testing.T, ctx context.Context, r *registry.Registry, wantIn func(what string, err error)) {
	t.Helper()
	dst := cocoon.NewPaths(t.TempDir())
	other := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{Name: "other", MemorySize: 64 << 10, DiskSize: 64 << 10, Seed: 5})
	if _, err := other.WriteSnapshot(dst.RootDir); err != nil {
		t.Fatal(err)
	}
	// The node has the base image already (a 4 MiB pull saved per case).
	if err := os.MkdirAll(dst.CloudimgBlobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(f.src.CloudimgBlobDir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(f.src.CloudimgBlobDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst.CloudimgBlobDir, e.Name()), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	before := rootState(t, dst.RootDir)
	_, _, err := r.PullSnapshot(ctx, dst, "vm", "latest", registry.PullOptions{})
	wantIn("PullSnapshot", err)
	after := rootState(t, dst.RootDir)
	for k, v := range after {
		if before[k] == v {
			continue
		}
		// Base images are pulled first, each verified on its own: a
		// complete one under its own SHA-256 is not a partial write.
		if name, ok := strings.CutPrefix(k, "cloudimg/blobs/"); ok && before[k] == "" && strings.TrimSuffix(name, ".qcow2") == v {
			continue
		}
		t.Errorf("refused pull wrote %s", k)
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("refused pull removed %s", k)
		}
	}
	entries, _ = os.ReadDir(dst.SnapshotDataDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cocoon.StagingPrefix) {
			t.Errorf("refused pull left staging dir %s", e.Name())
		}
	}
}

// TestHostile_Store: objects that are truncated, oversized or point outside
// their bounds make every pull refuse with an error that says so, before
// anything appears outside the pull's own staging.
func TestHostile_Store(t *testing.T) {
	ctx := context.Background()
	f := newHostileFixture(t)
	layer := f.m.Layers[0]
	for _, l := range f.m.Layers {
		if l.Size > layer.Size {
			layer = l // the biggest: it has data chunks in a pack
		}
	}

	t.Run("truncated recipe", func(t *testing.T) {
		key := recipeKeyOf(layer.Recipe)
		data, _, err := f.store.GetBytes(ctx, key, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		f.replace(t, key, data[:len(data)/2])
		f.refuses(t, true, false, false, "corrupt store object", "recipe")
	})

	t.Run("blob recipe truncated", func(t *testing.T) {
		desc, _, err := f.store.GetBytes(ctx, "blobs/chunked/"+f.blob+".json", 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Recipe string }
		_ = json.Unmarshal(desc, &d)
		data, _, err := f.store.GetBytes(ctx, recipeKeyOf(d.Recipe), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		f.replace(t, recipeKeyOf(d.Recipe), data[:len(data)-3])
		f.refuses(t, false, true, false, "corrupt store object")
	})

	t.Run("recipe larger than the layer", func(t *testing.T) {
		// A genuine recipe object (its ID matches) describing more bytes
		// than the manifest says the file has.
		rec := &manifest.Recipe{}
		rec.AppendZero(uint64(layer.Size))
		rec.AppendZero(1 << 40)
		data, err := manifest.EncodeFull(rec)
		if err != nil {
			t.Fatal(err)
		}
		id := chunk.Sum(data).String()
		f.replace(t, recipeKeyOf(id), data)
		f.manifestWith(t, func(doc map[string]any) {
			for _, l := range doc["layers"].([]any) {
				if l.(map[string]any)["filename"] == layer.Filename {
					l.(map[string]any)["recipe"] = id
				}
			}
		})
		f.refuses(t, true, false, false, "recipe has", "size")
	})

	t.Run("descriptor recipe larger than the blob", func(t *testing.T) {
		rec := &manifest.Recipe{}
		rec.AppendZero(uint64(f.blobSize) + 1<<40)
		data, err := manifest.EncodeFull(rec)
		if err != nil {
			t.Fatal(err)
		}
		id := chunk.Sum(data).String()
		f.replace(t, recipeKeyOf(id), data)
		desc, _ := json.Marshal(map[string]any{"schemaVersion": 1, "digest": f.blob, "size": f.blobSize, "recipe": id})
		f.replace(t, "blobs/chunked/"+f.blob+".json", desc)
		f.refuses(t, false, true, false, "recipe size")
	})

	t.Run("descriptor size 1<<60", func(t *testing.T) {
		desc, _, err := f.store.GetBytes(ctx, "blobs/chunked/"+f.blob+".json", 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		_ = json.Unmarshal(desc, &d)
		d["size"] = int64(1) << 60
		data, _ := json.Marshal(d)
		f.replace(t, "blobs/chunked/"+f.blob+".json", data)
		f.refuses(t, false, true, false, "recipe size", "size")
	})

	t.Run("descriptor names another digest", func(t *testing.T) {
		desc, _, err := f.store.GetBytes(ctx, "blobs/chunked/"+f.blob+".json", 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		_ = json.Unmarshal(desc, &d)
		d["digest"] = layer.Digest
		data, _ := json.Marshal(d)
		f.replace(t, "blobs/chunked/"+f.blob+".json", data)
		f.refuses(t, false, true, false, "names digest")
	})

	t.Run("index points past the pack end", func(t *testing.T) {
		// Replace every index object by one that places every chunk one
		// pack length further on, in a pack it says is twice as long.
		var records []index.PackRecord
		for _, key := range f.keysUnder(t, "blobs/index/") {
			data, _, err := f.store.GetBytes(ctx, key, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			packs, err := index.DecodeIndexObject(data)
			if err != nil {
				t.Fatal(err)
			}
			f.replace(t, key, []byte("gone"))
			if err := f.store.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			for _, p := range packs {
				for i := range p.Entries {
					p.Entries[i].BlockOffset += uint64(p.Size)
				}
				p.Size *= 2
				records = append(records, p)
			}
		}
		data, err := index.EncodeIndexObject(records)
		if err != nil {
			t.Fatal(err)
		}
		f.replace(t, "blobs/index/ffffffffffffffff-hostile", data)
		f.refuses(t, true, true, false, "range past end")
	})

	t.Run("truncated pack", func(t *testing.T) {
		for _, key := range f.keysUnder(t, "blobs/packs/") {
			data, _, err := f.store.GetBytes(ctx, key, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			f.replace(t, key, data[:min(len(data), 100)])
		}
		f.refuses(t, true, true, false, "range past end", "unexpected EOF", "pack")
	})

	t.Run("pack table points past its end", func(t *testing.T) {
		// The pull reads chunks by the index, so it notices the broken
		// table only through the bytes; Check reads the table itself.
		for _, key := range f.keysUnder(t, "blobs/packs/") {
			data, _, err := f.store.GetBytes(ctx, key, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			// Keep the head and the tail (the table) and drop the blocks
			// between: the table's offsets now point past the pack's end.
			keep := min(len(data)/2, 8<<10)
			bad := append(append([]byte{}, data[:64]...), data[len(data)-keep:]...)
			f.replace(t, key, bad)
		}
		f.refuses(t, true, true, false, "pack", "chunk", "range past end")
		rep, err := newRegistry(t, f.store).Check(ctx, registry.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Error("Check found nothing wrong with broken packs")
		}
		for _, p := range rep.Problems {
			t.Logf("check: %s %s: %s", p.Kind, p.Object, p.Detail)
		}
	})

	t.Run("manifest over 16 MiB", func(t *testing.T) {
		big := make([]byte, 17<<20)
		copy(big, f.raw)
		for i := len(f.raw); i < len(big); i++ {
			big[i] = ' '
		}
		f.replace(t, "manifests/vm/latest.json", big)
		f.refuses(t, true, false, true, "limit")
	})

	t.Run("manifest of 128 MiB, sparse", func(t *testing.T) {
		// Written behind the store's back: a sparse file costs no disk.
		path := filepath.Join(f.dir, "manifests", "vm", "latest.json")
		f.replace(t, "manifests/vm/latest.json", f.raw) // restores it afterwards
		if err := os.Truncate(path, 128<<20); err != nil {
			t.Fatal(err)
		}
		f.refuses(t, true, false, true, "limit")
	})

	t.Run("layer size 1<<60", func(t *testing.T) {
		f.manifestWith(t, func(doc map[string]any) {
			doc["layers"].([]any)[0].(map[string]any)["size"] = int64(1) << 60
		})
		f.refuses(t, true, false, true, "out of range", "size")
	})

	t.Run("layer size 1<<49 with a matching recipe of holes", func(t *testing.T) {
		// Valid by every bound of the manifest and the recipe: the pull
		// refuses it by the engine's MaxFileSize (ext4 would refuse to
		// create it; XFS would, and hash 512 TiB of zeros), and must not
		// leave anything outside staging.
		rec := &manifest.Recipe{}
		rec.AppendZero(1 << 49)
		data, err := manifest.EncodeFull(rec)
		if err != nil {
			t.Fatal(err)
		}
		id := chunk.Sum(data).String()
		f.replace(t, recipeKeyOf(id), data)
		f.manifestWith(t, func(doc map[string]any) {
			l := doc["layers"].([]any)[0].(map[string]any)
			l["size"], l["recipe"] = int64(1)<<49, id
		})
		f.refuses(t, true, false, false, "size", "digest", "mismatch", "too large", "file")
	})

	t.Run("base image named outside cloudimg", func(t *testing.T) {
		f.manifestWith(t, func(doc map[string]any) {
			if bi, ok := doc["baseImages"].([]any); ok && len(bi) > 0 {
				bi[0].(map[string]any)["filename"] = "../../../etc/x.qcow2"
			}
		})
		f.refuses(t, true, false, true, "invalid", "filename", "name")
	})

	// The fixture is whole again: a clean pull works.
	if _, _, err := newRegistry(t, f.store).PullSnapshot(ctx, cocoon.NewPaths(t.TempDir()), "vm", "latest", registry.PullOptions{}); err != nil {
		t.Fatalf("restored store: %v", err)
	}
}
