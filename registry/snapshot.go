package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/puller"
)

const (
	// recordKey carries the snapshot's whole Cocoon record in the manifest,
	// so a pull restores every field, including ones this code does not know.
	recordKey   = "cocoonRecord"
	defaultTag  = "latest"
	baseImageRO = 0o444
)

// PushOptions tune PushSnapshot.
type PushOptions struct {
	// Progress receives the counts so far.
	Progress Progress
}

// Push uploads a Cocoon snapshot to the registry: every file of its data dir
// and the base images its record pins, deduplicated against everything the
// store holds. progress, if not nil, receives one line per file.
func (r *Registry) Push(ctx context.Context, paths *cocoon.Paths, snapshotName, tag string, progress func(string)) (*manifest.Manifest, error) {
	m, _, err := r.PushSnapshot(ctx, paths, snapshotName, tag, lineProgress(progress))
	return m, err
}

// lineProgress turns the seed's line callback into a Progress that reports
// each finished file.
func lineProgress(progress func(string)) Progress {
	if progress == nil {
		return nil
	}
	var files int64
	return func(s TransferStats) {
		if s.Files != files {
			files = s.Files
			progress(fmt.Sprintf("%d files, %s scanned, %s new, %s uploaded",
				s.Files, cocoon.HumanSize(s.RawBytes), cocoon.HumanSize(s.NewBytes), cocoon.HumanSize(s.UploadedBytes)))
		}
	}
}

// PushSnapshot is Push reporting progress counts and the transfer totals.
func (r *Registry) PushSnapshot(ctx context.Context, paths *cocoon.Paths, snapshotName, tag string, progress Progress) (*manifest.Manifest, TransferStats, error) {
	if tag == "" {
		tag = defaultTag
	}
	if err := manifest.ValidateName(snapshotName); err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	if err := manifest.ValidateTag(tag); err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	db, err := cocoon.LoadSnapshotDB(ctx, paths)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	id, err := cocoon.ResolveSnapshotID(db, snapshotName)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	rec := db.Snapshots[id]
	if rec == nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w: no record for id %s", snapshotName, tag, cocoon.ErrSnapshotNotFound, id)
	}
	dir, err := paths.SnapshotDir(id)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	files, err := cocoon.SnapshotFiles(paths, id)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	var inputs []pushInput
	for _, f := range files {
		inputs = append(inputs, pushInput{path: filepath.Join(dir, f.Name), name: f.Name})
	}
	var bases []pushInput
	for _, hex := range sortedKeys(rec.ImageBlobIDs) {
		p, err := paths.CloudimgBlobPath(hex)
		if err != nil {
			return nil, TransferStats{}, fmt.Errorf("push %s:%s: base image: %w", snapshotName, tag, err)
		}
		bases = append(bases, pushInput{path: p, name: filepath.Base(p)})
	}
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	m := &manifest.Manifest{
		SchemaVersion: 1,
		Name:          snapshotName,
		Tag:           tag,
		SnapshotID:    id,
		Image:         rec.Image,
		ImageBlobIDs:  rec.ImageBlobIDs,
		CPU:           rec.CPU,
		Memory:        rec.Memory,
		Storage:       rec.Storage,
		NICs:          rec.NICs,
		CreatedAt:     rec.CreatedAt,
		Extra:         map[string]json.RawMessage{recordKey: recJSON},
	}
	st, err := r.pushFiles(ctx, m, inputs, bases, progress)
	if err != nil {
		return nil, st, fmt.Errorf("push %s:%s: %w", snapshotName, tag, err)
	}
	return m, st, nil
}

// PushDir pushes every regular file of a folder as name:tag, for users
// without Cocoon.
func (r *Registry) PushDir(ctx context.Context, dir, name, tag string, progress Progress) (*manifest.Manifest, TransferStats, error) {
	if tag == "" {
		tag = defaultTag
	}
	if err := checkRef(name, tag); err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", name, tag, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", name, tag, err)
	}
	var inputs []pushInput
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := manifest.ValidateFilename(e.Name()); err != nil {
			return nil, TransferStats{}, fmt.Errorf("push %s:%s: %w", name, tag, err)
		}
		inputs = append(inputs, pushInput{path: filepath.Join(dir, e.Name()), name: e.Name()})
	}
	m := &manifest.Manifest{SchemaVersion: 1, Name: name, Tag: tag, CreatedAt: time.Now().UTC()}
	st, err := r.pushFiles(ctx, m, inputs, nil, progress)
	if err != nil {
		return nil, st, fmt.Errorf("push %s:%s: %w", name, tag, err)
	}
	return m, st, nil
}

type pushInput struct {
	path string
	name string
}

// pushOrder puts disk images first: guest memory repeats much of the page
// cache, so memory pushed after the disk finds more of its pages known.
func pushOrder(name string) int {
	switch chunk.ParamsFor(name, 0).Method {
	case chunk.Fixed:
		if strings.Contains(name, "mem") || name == "vmstate" {
			return 2
		}
		return 1
	default:
		return 0
	}
}

// pushFiles pushes layers and base images, fills m's layers, and writes the
// manifest last. Recipes are stored as patches against the same file of the
// tag's previous revision when that is smaller.
func (r *Registry) pushFiles(ctx context.Context, m *manifest.Manifest, inputs, bases []pushInput, progress Progress) (TransferStats, error) {
	start := time.Now()
	if err := r.init(ctx); err != nil {
		return TransferStats{}, err
	}
	guard, err := r.startPush(ctx)
	if err != nil {
		return TransferStats{}, err
	}
	before := r.store.Stats()
	prev := r.previousLayers(ctx, m.Name, m.Tag)

	slices.SortStableFunc(inputs, func(a, b pushInput) int { return pushOrder(a.name) - pushOrder(b.name) })
	p := r.newPusher(ctx, progress)
	p.condemned = guard.condemned
	results := make([]*fileResult, len(inputs))
	for i, in := range inputs {
		res, err := p.addFile(in.path, "")
		if err != nil {
			p.abort(err)
			return TransferStats{}, err
		}
		results[i] = res
	}
	baseResults := make([]*fileResult, len(bases))
	for i, in := range bases {
		// A base image the store already has is not read again.
		res := r.knownBaseImage(ctx, in)
		if res == nil {
			var err error
			if res, err = p.addFile(in.path, ""); err != nil {
				p.abort(err)
				return TransferStats{}, err
			}
		}
		baseResults[i] = res
	}
	if err := p.finish(); err != nil {
		return TransferStats{}, err
	}

	m.Layers = m.Layers[:0]
	m.TotalSize = 0
	for i, in := range inputs {
		layer, err := r.commitFile(ctx, in.name, results[i], prev[in.name])
		if err != nil {
			return TransferStats{}, err
		}
		m.Layers = append(m.Layers, layer)
		m.TotalSize += layer.Size
	}
	m.BaseImages = m.BaseImages[:0]
	for i, in := range bases {
		layer, err := r.commitFile(ctx, in.name, baseResults[i], nil)
		if err != nil {
			return TransferStats{}, err
		}
		m.BaseImages = append(m.BaseImages, layer)
	}
	m.PushedAt = time.Now().UTC()
	data, err := m.Marshal()
	if err != nil {
		return TransferStats{}, fmt.Errorf("encode manifest: %w", err)
	}
	// The gc commit check and the manifest write (GC.md, "A push").
	known := map[chunk.ID]*manifest.Recipe{}
	for i := range m.Layers {
		if id, err := chunk.ParseID(m.Layers[i].Recipe); err == nil && results[i].recipe != nil {
			known[id] = results[i].recipe
		}
	}
	if _, err := r.pushManifestGuarded(ctx, m.Name, m.Tag, data, guard, known); err != nil {
		return TransferStats{}, err
	}
	// The pushed files hold these chunks: a pull on this node copies them.
	for i, in := range inputs {
		r.rememberLocal(in.path, results[i].recipe)
	}
	st := p.snapshot()
	r.fillStoreStats(&st, before)
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// knownBaseImage returns the layer facts of a base image the store already
// holds under the SHA-256 its name claims, or nil to push it. Anything
// unusual (unknown, legacy, size mismatch) means: push it again, chunked.
func (r *Registry) knownBaseImage(ctx context.Context, in pushInput) *fileResult {
	digest := strings.TrimSuffix(in.name, filepath.Ext(in.name))
	if _, err := validateDigest(digest); err != nil {
		return nil
	}
	desc, legacy, size, err := r.readDescriptor(ctx, digest)
	if err != nil || legacy {
		return nil
	}
	fi, err := os.Stat(in.path)
	if err != nil || fi.Size() != size {
		return nil
	}
	rid, err := chunk.ParseID(desc.Recipe)
	if err != nil {
		return nil
	}
	return &fileResult{digest: digest, size: size, mode: baseImageRO, knownRecipe: rid}
}

// commitFile stores a file's recipe and blob descriptor and returns its layer.
func (r *Registry) commitFile(ctx context.Context, name string, res *fileResult, prev *manifest.Layer) (manifest.Layer, error) {
	layer := manifest.Layer{
		Digest: res.digest, Size: res.size, Filename: name,
		MediaType: manifest.MediaTypeFor(name), Mode: uint32(res.mode.Perm()),
	}
	if res.recipe == nil {
		layer.Recipe = res.knownRecipe.String()
		return layer, nil
	}
	layer.Chunker = res.params.String()
	var base *baseRecipe
	if prev != nil && prev.Recipe != "" {
		if id, err := chunk.ParseID(prev.Recipe); err == nil {
			// A base we cannot read only costs a full recipe.
			base, _ = r.loadRecipe(ctx, id)
		}
	}
	id, err := r.storeRecipe(ctx, res.recipe, res.key, base)
	if err != nil {
		return layer, fmt.Errorf("%s: %w", name, err)
	}
	if err := r.writeDescriptor(ctx, res, id); err != nil {
		return layer, fmt.Errorf("%s: %w", name, err)
	}
	layer.Recipe = id.String()
	return layer, nil
}

// previousLayers returns the layers of the revision this push replaces (the
// same tag, else "latest"), by file name. Missing is not an error.
func (r *Registry) previousLayers(ctx context.Context, name, tag string) map[string]*manifest.Layer {
	out := map[string]*manifest.Layer{}
	for _, t := range []string{tag, defaultTag} {
		m, err := r.PullManifest(ctx, name, t)
		if err != nil {
			continue
		}
		for i := range m.Layers {
			out[m.Layers[i].Filename] = &m.Layers[i]
		}
		return out
	}
	return out
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// PullOptions tune PullSnapshot.
type PullOptions struct {
	// LocalName renames the snapshot on this node (default: the repository name).
	LocalName string
	Progress  Progress
}

// Pull downloads a snapshot and installs it in Cocoon's snapshot directory.
// Files are written to a staging dir on the same filesystem, verified chunk
// by chunk and file by file, synced, renamed into place, and only then is the
// record added to snapshots.json under Cocoon's lock. An interrupted pull
// leaves no snapshot dir and no record.
func (r *Registry) Pull(ctx context.Context, paths *cocoon.Paths, name, tag string, progress func(string)) (*manifest.Manifest, error) {
	m, _, err := r.PullSnapshot(ctx, paths, name, tag, PullOptions{Progress: lineProgress(progress)})
	return m, err
}

// PullSnapshot is Pull with options, returning what was transferred.
func (r *Registry) PullSnapshot(ctx context.Context, paths *cocoon.Paths, name, tag string, opts PullOptions) (*manifest.Manifest, TransferStats, error) {
	start := time.Now()
	if tag == "" {
		tag = defaultTag
	}
	localName := opts.LocalName
	if localName == "" {
		localName = name
	}
	fail := func(err error) (*manifest.Manifest, TransferStats, error) {
		return nil, TransferStats{}, fmt.Errorf("pull %s:%s: %w", name, tag, err)
	}
	if err := checkRef(name, tag); err != nil {
		return fail(err)
	}
	if err := manifest.ValidateName(localName); err != nil {
		return fail(err)
	}
	if err := r.init(ctx); err != nil {
		return fail(err)
	}
	before := r.store.Stats()
	data, err := r.ManifestJSON(ctx, name, tag)
	if err != nil {
		return nil, TransferStats{}, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return fail(err)
	}
	digest := manifest.Digest(data)
	id := m.SnapshotID
	if id == "" {
		id = digest[:26]
	}
	if err := cocoon.ValidateSnapshotID(id); err != nil {
		return fail(fmt.Errorf("manifest snapshot id: %w", err))
	}
	if err := r.syncIndex(ctx); err != nil {
		return fail(err)
	}
	if err := r.pullBaseImages(ctx, paths, m); err != nil {
		return fail(err)
	}
	// A dead pull of this snapshot left its files: verify and reuse them.
	staging, resume, err := cocoon.AdoptStagingDir(ctx, paths, id)
	if err != nil {
		return fail(err)
	}
	if !resume {
		if staging, err = cocoon.NewStagingDir(paths, id); err != nil {
			return fail(err)
		}
	}
	// After an exchange the staging dir holds the previous revision:
	// removing it is off the critical path (see replaceFile).
	defer r.removeLater(staging)
	_, _ = cocoon.CleanStaleStaging(ctx, paths, 0)
	dir, err := paths.SnapshotDir(id)
	if err != nil {
		return fail(err)
	}
	ps, err := r.fetchLayers(ctx, staging, dir, m, resume, opts.Progress, start)
	if err != nil {
		return fail(err)
	}
	if err := r.install(ctx, paths, staging, id, localName, m, digest, tag); err != nil {
		return fail(err)
	}
	st := fromPullStats(ps)
	r.fillStoreStats(&st, before)
	st.Seconds = time.Since(start).Seconds()
	return m, st, nil
}

// fetchLayers writes every layer of m into dir, verified, and has their
// chunks recorded as held in final, where install moves them.
func (r *Registry) fetchLayers(ctx context.Context, dir, final string, m *manifest.Manifest, resume bool, progress Progress, start time.Time) (puller.Stats, error) {
	final, err := filepath.Abs(final)
	if err != nil {
		return puller.Stats{}, err
	}
	var chunked []manifest.Layer
	for _, l := range m.Layers {
		if l.Recipe != "" {
			chunked = append(chunked, l)
			continue
		}
		if err := r.pullLegacy(ctx, l.Digest, l.Size, filepath.Join(dir, l.Filename)); err != nil {
			return puller.Stats{}, fmt.Errorf("layer %s: %w", l.Filename, err)
		}
	}
	return r.fetch(ctx, func() ([]puller.File, error) {
		files := make([]puller.File, 0, len(chunked))
		for _, l := range chunked {
			base, err := r.layerRecipe(ctx, l)
			if err != nil {
				return nil, err
			}
			if base.recipe.Size != l.Size {
				return nil, fmt.Errorf("layer %s: %w: recipe has %d bytes, manifest %d", l.Filename, ErrCorruptStore, base.recipe.Size, l.Size)
			}
			mode := os.FileMode(l.Mode).Perm()
			if mode == 0 {
				mode = 0o640
			}
			files = append(files, puller.File{
				Path: filepath.Join(dir, l.Filename), Recipe: base.recipe, Digest: l.Digest, Mode: mode, Resume: resume,
				Record: filepath.Join(final, l.Filename),
			})
		}
		return files, nil
	}, progress, start)
}

// pullBaseImages fetches the base images m needs that this node lacks, into
// cloudimg/blobs, read-only. Present ones are not touched.
func (r *Registry) pullBaseImages(ctx context.Context, paths *cocoon.Paths, m *manifest.Manifest) error {
	for _, b := range m.BaseImages {
		hex := strings.TrimSuffix(b.Filename, filepath.Ext(b.Filename))
		target, err := paths.CloudimgBlobPath(hex)
		if err != nil {
			return fmt.Errorf("base image %q: %w", b.Filename, err)
		}
		if filepath.Base(target) != b.Filename {
			return fmt.Errorf("base image %q: %w: expected %s", b.Filename, manifest.ErrInvalidName, filepath.Base(target))
		}
		if _, err := os.Stat(target); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("base image %s: %w", b.Filename, err)
		}
		if err := r.PullBlob(ctx, b.Digest, target); err != nil {
			return fmt.Errorf("base image %s: %w", b.Filename, err)
		}
		if err := os.Chmod(target, baseImageRO); err != nil {
			return fmt.Errorf("base image %s: %w", b.Filename, err)
		}
	}
	return nil
}

// install makes the staging dir the snapshot's directory and adds the
// record under Cocoon's lock, keeping every other record and field. A
// snapshot already installed under this ID is swapped atomically
// (renameat2 RENAME_EXCHANGE), so Cocoon sees the old revision or the new
// one, never neither; the old content ends up in staging, which the caller
// removes.
func (r *Registry) install(ctx context.Context, paths *cocoon.Paths, staging, id, localName string, m *manifest.Manifest, digest, tag string) error {
	dir, err := paths.SnapshotDir(id)
	if err != nil {
		return err
	}
	exchanged := false
	if err := cocoon.InstallSnapshotDir(ctx, paths, id, staging); err != nil {
		if !errors.Is(err, cocoon.ErrSnapshotDirExists) {
			return err
		}
		if err := cocoon.ExchangeSnapshotDir(ctx, paths, id, staging); err != nil {
			return err
		}
		exchanged = true
	}
	var replaced string
	err = cocoon.UpdateSnapshotDB(ctx, paths, func(db *cocoon.SnapshotDB) error {
		rec, err := recordFromManifest(m)
		if err != nil {
			return err
		}
		rec.ID, rec.Name, rec.DataDir, rec.Pending = id, localName, dir, false
		if prevID, ok := db.Names[localName]; ok && prevID != id {
			replaced = prevID
			delete(db.Snapshots, prevID)
		}
		if rec.Extra == nil {
			rec.Extra = map[string]json.RawMessage{}
		}
		rec.Extra[pulledDigestField], _ = json.Marshal(digest)
		rec.Extra[pulledTagField], _ = json.Marshal(m.Name + ":" + tag)
		db.Snapshots[id] = rec
		db.Names[localName] = id
		return nil
	})
	if err != nil {
		// Put back what was there: the old revision, or nothing.
		if exchanged {
			_ = cocoon.ExchangeSnapshotDir(context.WithoutCancel(ctx), paths, id, staging)
		} else {
			_ = os.Rename(dir, staging)
		}
		return fmt.Errorf("record snapshot: %w", err)
	}
	if replaced != "" {
		if d, err := paths.SnapshotDir(replaced); err == nil {
			_ = os.RemoveAll(d)
		}
	}
	return nil
}

// Fields the registry adds to a pulled snapshot's record: the manifest it
// came from, so EnsureSnapshotTag can tell whether the local revision is the
// tag's current one.
const (
	pulledDigestField = "epoch_manifest_digest"
	pulledTagField    = "epoch_ref"
)

// recordFromManifest rebuilds the Cocoon record: the one pushed with the
// snapshot when present (every field kept), else from Epoch's fields.
func recordFromManifest(m *manifest.Manifest) (*cocoon.SnapshotRecord, error) {
	rec := &cocoon.SnapshotRecord{}
	if raw, ok := m.Extra[recordKey]; ok {
		if err := json.Unmarshal(raw, rec); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", manifest.ErrInvalidManifest, recordKey, err)
		}
		return rec, nil
	}
	rec.Image, rec.ImageBlobIDs = m.Image, m.ImageBlobIDs
	rec.CPU, rec.Memory, rec.Storage, rec.NICs = m.CPU, m.Memory, m.Storage, m.NICs
	rec.CreatedAt = m.CreatedAt
	if len(m.ImageBlobIDs) > 0 {
		rec.ImageType = "cloudimg"
	}
	return rec, nil
}

// pulledDigest returns the manifest digest a local snapshot was pulled
// from, or "" when it was not pulled by this registry.
func pulledDigest(rec *cocoon.SnapshotRecord) string {
	raw, ok := rec.Extra[pulledDigestField]
	if !ok {
		return ""
	}
	var d string
	if err := json.Unmarshal(raw, &d); err != nil {
		return ""
	}
	return d
}

var errNoLocal = errors.New("no local snapshot")
