package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/pack"
)

// Problem kinds a Check reports.
const (
	ProblemCorruptManifest = "corrupt-manifest" // a manifest that does not parse, or does not match its key
	ProblemMissingManifest = "missing-manifest" // a catalog tag without its manifest
	ProblemMissingBlob     = "missing-blob"     // a layer whose blob (descriptor or legacy blob) is gone
	ProblemCorruptBlob     = "corrupt-blob"     // a descriptor that is unreadable or disagrees with the layer
	ProblemMissingRecipe   = "missing-recipe"   // a recipe object that is gone
	ProblemCorruptRecipe   = "corrupt-recipe"   // a recipe (or a patch base) that fails its checks
	ProblemMissingChunk    = "missing-chunk"    // chunks no index object locates
	ProblemMissingPack     = "missing-pack"     // a pack the index points to is gone
	ProblemTruncatedPack   = "truncated-pack"   // a pack shorter than the blocks the index locates in it
	ProblemCorruptPack     = "corrupt-pack"     // a pack whose bytes do not hash to its name or whose table is broken
	ProblemCorruptChunk    = "corrupt-chunk"    // chunks that do not decode or do not hash to their ID
)

const (
	// maxPackObject bounds one pack read by Check (WithPackSize allows
	// 1 GiB packs, plus the table).
	maxPackObject = 1<<30 + 64<<20
	// checkReadWorkers bounds how many whole packs Check holds in memory.
	checkReadWorkers = 2
	// maxRefsPerProblem bounds the refs listed on one problem.
	maxRefsPerProblem = 16
)

// CheckOptions tune Check.
type CheckOptions struct {
	// ReadData downloads every pack a manifest needs, checks that its bytes
	// hash to its name and that its table is sound, and decodes and hashes
	// every needed chunk. Without it, packs are only stat-checked.
	ReadData bool
	// Progress, if set, is called as the check advances.
	Progress func(CheckProgress)
}

// CheckProgress tells how far a Check is.
type CheckProgress struct {
	Phase string `json:"phase"` // "manifests", "packs" or "data"
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// Problem is one thing Check found wrong.
type Problem struct {
	Kind string `json:"kind"`
	// Ref is the first manifest ("name:tag", or "name@sha256:<hex>" for a
	// manifest stored by digest only) that needs the object; Refs lists
	// them all (at most 16).
	Ref  string   `json:"ref"`
	Refs []string `json:"refs,omitempty"`
	// Object is the store key of the object at fault.
	Object string `json:"object"`
	Detail string `json:"detail"`
}

// CheckReport is what Check found.
type CheckReport struct {
	ReadData  bool      `json:"read_data"`
	Manifests int       `json:"manifests"`
	Blobs     int       `json:"blobs"`
	Recipes   int       `json:"recipes"`
	Chunks    int64     `json:"chunks"`
	Packs     int       `json:"packs"`
	PacksRead int       `json:"packs_read"`
	BytesRead int64     `json:"bytes_read"`
	Problems  []Problem `json:"problems"`
}

// OK reports whether the check found no problem.
func (c *CheckReport) OK() bool { return len(c.Problems) == 0 }

// Check verifies that every manifest in the store can be pulled: each
// layer's blob exists, its recipe loads (hash and patch chain verified),
// every data chunk of the recipe is located by the store's index objects,
// and every pack holding them exists. With opts.ReadData the packs are read
// and every needed chunk decoded and hashed.
//
// Problems with the store's content are listed in the report; the error is
// for failures to run the check (the store unreachable, ctx cancelled).
func (r *Registry) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	if err := r.init(ctx); err != nil {
		return nil, err
	}
	if err := r.syncIndex(ctx); err != nil {
		return nil, err
	}
	c := &checker{
		r: r, opts: opts,
		report:      &CheckReport{ReadData: opts.ReadData, Problems: []Problem{}},
		problems:    map[string]int{},
		blobs:       map[string][]int{},
		recipes:     map[chunk.ID][]int{},
		recipePacks: map[chunk.ID][]int32{},
		seen:        map[chunk.ID]int32{},
		packIdx:     map[chunk.ID]int32{},
	}
	if err := c.manifests(ctx); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if err := c.statPacks(ctx); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if opts.ReadData {
		if err := c.readPacks(ctx); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	c.report.Packs = len(c.packs)
	c.report.Chunks = int64(len(c.seen))
	return c.report, nil
}

// checker is the state of one Check.
type checker struct {
	r      *Registry
	opts   CheckOptions
	report *CheckReport

	mu       sync.Mutex
	problems map[string]int // kind+object -> index in report.Problems

	blobs   map[string][]int   // blob digest+recipe -> problems found for it
	recipes map[chunk.ID][]int // recipe id -> problems found for it
	// recipePacks: recipe id -> the packs its chunks are in
	recipePacks map[chunk.ID][]int32
	seen        map[chunk.ID]int32 // chunk -> index in packs, or -1 when missing
	packIdx     map[chunk.ID]int32
	packs       []*checkPack
}

// checkPack is one pack the manifests need.
type checkPack struct {
	id      chunk.ID
	refs    []string
	refSet  map[string]struct{}
	entries []pack.Entry // the needed chunks, as the index locates them
	missing bool
}

func (p *checkPack) addRef(ref string) {
	if _, ok := p.refSet[ref]; ok {
		return
	}
	p.refSet[ref] = struct{}{}
	p.refs = append(p.refs, ref)
}

// add records a problem, merging it with an earlier one about the same
// object, and returns its index.
func (c *checker) add(kind, ref, object, detail string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kind + "\x00" + object
	if i, ok := c.problems[key]; ok {
		c.addRefLocked(i, ref)
		return i
	}
	c.report.Problems = append(c.report.Problems, Problem{Kind: kind, Ref: ref, Refs: []string{ref}, Object: object, Detail: detail})
	i := len(c.report.Problems) - 1
	c.problems[key] = i
	return i
}

func (c *checker) addRefs(i int, refs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ref := range refs {
		c.addRefLocked(i, ref)
	}
}

func (c *checker) addRefLocked(i int, ref string) {
	p := &c.report.Problems[i]
	if p.Ref == "" {
		p.Ref = ref
	}
	if ref == "" || slices.Contains(p.Refs, ref) || len(p.Refs) >= maxRefsPerProblem {
		return
	}
	p.Refs = append(p.Refs, ref)
}

func (c *checker) progress(phase string, done, total int64) {
	if c.opts.Progress != nil {
		c.opts.Progress(CheckProgress{Phase: phase, Done: done, Total: total})
	}
}

// manifestRef is one manifest object in the store.
type manifestRef struct {
	key    string
	name   string
	tag    string // "" for a manifest stored by digest
	digest string // for a manifest stored by digest
}

func (m manifestRef) String() string {
	if m.tag != "" {
		return m.name + ":" + m.tag
	}
	return m.name + "@sha256:" + m.digest
}

// listManifests lists every manifest object, by tag and by digest; keys
// that are neither are skipped.
func (r *Registry) listManifests(ctx context.Context) ([]manifestRef, error) {
	var refs []manifestRef
	err := r.store.List(ctx, manifestDir, func(oi objectstore.ObjectInfo) error {
		if ref, ok := parseManifestKey(oi.Key); ok {
			refs = append(refs, ref)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	return refs, nil
}

func parseManifestKey(key string) (manifestRef, bool) {
	rest, ok := strings.CutPrefix(key, manifestDir)
	if !ok {
		return manifestRef{}, false
	}
	rest, ok = strings.CutSuffix(rest, manifestFileType)
	if !ok {
		return manifestRef{}, false
	}
	if name, file, ok := strings.Cut(rest, "/"+manifestDigests+"/"); ok {
		d, ok := strings.CutPrefix(file, "sha256-")
		if !ok || manifest.ValidateName(name) != nil {
			return manifestRef{}, false
		}
		if _, err := validateDigest(d); err != nil {
			return manifestRef{}, false
		}
		return manifestRef{key: key, name: name, digest: d}, true
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return manifestRef{}, false
	}
	name, tag := rest[:i], rest[i+1:]
	if manifest.ValidateName(name) != nil || manifest.ValidateTag(tag) != nil {
		return manifestRef{}, false
	}
	return manifestRef{key: key, name: name, tag: tag}, true
}

// manifests checks every manifest and what its layers need, short of the
// packs themselves.
func (c *checker) manifests(ctx context.Context) error {
	refs, err := c.r.listManifests(ctx)
	if err != nil {
		return err
	}
	// Tags first, so a problem names a tag before a bare digest.
	slices.SortStableFunc(refs, func(a, b manifestRef) int {
		return cmpBool(a.tag == "", b.tag == "")
	})
	have := map[string]bool{}
	for i, ref := range refs {
		have[ref.key] = true
		c.progress("manifests", int64(i), int64(len(refs)))
		if err := c.manifest(ctx, ref); err != nil {
			return err
		}
	}
	c.progress("manifests", int64(len(refs)), int64(len(refs)))
	cat, _, err := c.r.readCatalog(ctx)
	if err != nil {
		if errors.Is(err, ErrCorruptStore) {
			c.add(ProblemCorruptManifest, "", catalogKey, err.Error())
			return nil
		}
		return fmt.Errorf("read catalog: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(cat.Repositories)) {
		repo := cat.Repositories[name]
		if repo == nil || manifest.ValidateName(name) != nil {
			continue
		}
		for _, tag := range slices.Sorted(maps.Keys(repo.Tags)) {
			if manifest.ValidateTag(tag) != nil {
				continue
			}
			if key := manifestTagKey(name, tag); !have[key] {
				c.add(ProblemMissingManifest, name+":"+tag, key, "the catalog lists the tag but its manifest is gone")
			}
		}
	}
	return nil
}

func (c *checker) manifest(ctx context.Context, ref manifestRef) error {
	data, _, err := c.r.store.GetBytes(ctx, ref.key, maxManifest)
	if errors.Is(err, objectstore.ErrNotFound) {
		return nil // deleted since the listing
	}
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", ref, err)
	}
	c.report.Manifests++
	name := ref.String()
	m, err := manifest.Parse(data)
	if err != nil {
		c.add(ProblemCorruptManifest, name, ref.key, err.Error())
		return nil
	}
	if ref.digest != "" {
		if got := manifest.Digest(data); got != ref.digest {
			c.add(ProblemCorruptManifest, name, ref.key, "content hashes to sha256:"+got)
			return nil
		}
	}
	if m.Name != ref.name || (ref.tag != "" && m.Tag != ref.tag) {
		c.add(ProblemCorruptManifest, name, ref.key, fmt.Sprintf("document names %s:%s", m.Name, m.Tag))
		return nil
	}
	for _, l := range append(slices.Clone(m.Layers), m.BaseImages...) {
		if err := c.layer(ctx, name, l); err != nil {
			return err
		}
	}
	return nil
}

// layer checks one layer: its blob, its recipe(s) and its chunks' places.
// Work already done for the same blob only adds ref to what it found.
func (c *checker) layer(ctx context.Context, ref string, l manifest.Layer) error {
	key := l.Digest + "/" + l.Recipe
	if found, ok := c.blobs[key]; ok {
		for _, i := range found {
			c.addRefs(i, []string{ref})
		}
		return c.recipeRefs(ctx, ref, l)
	}
	c.report.Blobs++
	var found []int
	desc, legacy, size, err := c.r.readDescriptor(ctx, l.Digest)
	switch {
	case errors.Is(err, ErrBlobNotFound):
		found = append(found, c.add(ProblemMissingBlob, ref, descriptorKey(l.Digest),
			fmt.Sprintf("layer %s: neither a blob descriptor nor a whole blob", l.Filename)))
	case errors.Is(err, ErrCorruptStore):
		found = append(found, c.add(ProblemCorruptBlob, ref, descriptorKey(l.Digest), err.Error()))
	case err != nil:
		return err
	case size != l.Size:
		obj := descriptorKey(l.Digest)
		if legacy {
			obj = legacyBlobKey(l.Digest)
		}
		found = append(found, c.add(ProblemCorruptBlob, ref, obj,
			fmt.Sprintf("layer %s: blob has %d bytes, manifest %d", l.Filename, size, l.Size)))
	}
	c.blobs[key] = found
	if l.Recipe == "" && desc == nil {
		return nil // a whole blob only: nothing more to check
	}
	return c.recipeRefs(ctx, ref, l, descRecipe(desc)...)
}

func descRecipe(desc *blobDescriptor) []string {
	if desc == nil {
		return nil
	}
	return []string{desc.Recipe}
}

// recipeRefs checks the layer's recipe and any other recipe the blob's
// descriptor names (a pull by digest uses that one).
func (c *checker) recipeRefs(ctx context.Context, ref string, l manifest.Layer, more ...string) error {
	ids := slices.Compact(slices.DeleteFunc(append([]string{l.Recipe}, more...), func(s string) bool { return s == "" }))
	for _, s := range ids {
		id, err := chunk.ParseID(s)
		if err != nil {
			c.add(ProblemCorruptBlob, ref, descriptorKey(l.Digest), fmt.Sprintf("layer %s: recipe id %q: %v", l.Filename, s, err))
			continue
		}
		if err := c.recipe(ctx, ref, l, id); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) recipe(ctx context.Context, ref string, l manifest.Layer, id chunk.ID) error {
	if found, ok := c.recipes[id]; ok {
		for _, i := range found {
			c.addRefs(i, []string{ref})
		}
		c.chunkRefs(id, ref, nil)
		return nil
	}
	c.report.Recipes++
	base, err := c.r.loadRecipe(ctx, id)
	if err != nil {
		if !errors.Is(err, ErrCorruptStore) {
			return err
		}
		kind := ProblemCorruptRecipe
		if _, serr := c.r.store.Stat(ctx, recipeKey(id)); errors.Is(serr, objectstore.ErrNotFound) {
			kind = ProblemMissingRecipe
		}
		c.recipes[id] = []int{c.add(kind, ref, recipeKey(id), fmt.Sprintf("layer %s: %v", l.Filename, err))}
		return nil
	}
	var found []int
	if base.recipe.Size != l.Size {
		found = append(found, c.add(ProblemCorruptRecipe, ref, recipeKey(id),
			fmt.Sprintf("layer %s: recipe has %d bytes, manifest %d", l.Filename, base.recipe.Size, l.Size)))
	}
	var ids []chunk.ID
	for _, e := range base.recipe.Extents {
		if !e.Zero {
			ids = append(ids, e.ID)
		}
	}
	// Missing chunks are one problem per recipe, not one per chunk.
	missing, first := 0, chunk.ID{}
	if err := c.locate(ids, func(id chunk.ID) {
		if missing == 0 {
			first = id
		}
		missing++
	}); err != nil {
		return err
	}
	if missing > 0 {
		found = append(found, c.add(ProblemMissingChunk, ref, recipeKey(id),
			fmt.Sprintf("layer %s: %d chunks are in no index object (first %s)", l.Filename, missing, first)))
	}
	c.recipes[id] = found
	c.chunkRefs(id, ref, ids)
	return nil
}

// locate finds the pack of every chunk not seen before and calls missing
// for those no index object locates.
func (c *checker) locate(ids []chunk.ID, missing func(chunk.ID)) error {
	var fresh []chunk.ID
	for _, id := range ids {
		p, ok := c.seen[id]
		if !ok {
			c.seen[id] = -2 // queued
			fresh = append(fresh, id)
			continue
		}
		if p == -1 {
			missing(id)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	err := c.r.idx.LookupMany(fresh, func(i int, loc index.Location, ok bool) {
		id := fresh[i]
		if !ok {
			c.seen[id] = -1
			missing(id)
			return
		}
		pi, known := c.packIdx[loc.Pack]
		if !known {
			pi = int32(len(c.packs))
			c.packIdx[loc.Pack] = pi
			c.packs = append(c.packs, &checkPack{id: loc.Pack, refSet: map[string]struct{}{}})
		}
		c.seen[id] = pi
		c.packs[pi].entries = append(c.packs[pi].entries, pack.Entry{
			ID: id, BlockOffset: loc.BlockOffset, BlockLength: loc.BlockLength,
			Offset: loc.Offset, Length: loc.Length,
		})
	})
	if err != nil {
		return fmt.Errorf("look up chunks: %w", err)
	}
	return nil
}

// chunkRefs records ref as a user of every pack holding recipe id's
// chunks (ids: the recipe's data chunks, or nil for a recipe seen before).
func (c *checker) chunkRefs(id chunk.ID, ref string, ids []chunk.ID) {
	packs, ok := c.recipePacks[id]
	if !ok {
		done := map[int32]bool{}
		for _, cid := range ids {
			pi := c.seen[cid]
			if pi < 0 || done[pi] {
				continue
			}
			done[pi] = true
			packs = append(packs, pi)
		}
		c.recipePacks[id] = packs
	}
	for _, pi := range packs {
		c.packs[pi].addRef(ref)
	}
}

// statPacks checks that every needed pack exists and is long enough for
// the blocks the index locates in it.
func (c *checker) statPacks(ctx context.Context) error {
	return c.eachPack(ctx, "packs", c.r.opts.concurrency, func(ctx context.Context, p *checkPack) error {
		oi, err := c.r.store.Stat(ctx, packKey(p.id))
		if errors.Is(err, objectstore.ErrNotFound) {
			p.missing = true
			i := c.add(ProblemMissingPack, firstRef(p.refs), packKey(p.id),
				fmt.Sprintf("pack holding %d needed chunks is gone", len(p.entries)))
			c.addRefs(i, p.refs)
			return nil
		}
		if err != nil {
			return err
		}
		var end uint64
		for _, e := range p.entries {
			end = max(end, e.BlockEnd())
		}
		if uint64(oi.Size) < end {
			i := c.add(ProblemTruncatedPack, firstRef(p.refs), packKey(p.id),
				fmt.Sprintf("pack has %d bytes, the index locates blocks up to %d", oi.Size, end))
			c.addRefs(i, p.refs)
		}
		return nil
	})
}

func firstRef(refs []string) string {
	if len(refs) == 0 {
		return ""
	}
	return refs[0]
}

// readPacks reads every existing needed pack whole and verifies it.
func (c *checker) readPacks(ctx context.Context) error {
	return c.eachPack(ctx, "data", checkReadWorkers, func(ctx context.Context, p *checkPack) error {
		if p.missing {
			return nil
		}
		data, _, err := c.r.store.GetBytes(ctx, packKey(p.id), maxPackObject)
		if errors.Is(err, objectstore.ErrNotFound) {
			i := c.add(ProblemMissingPack, firstRef(p.refs), packKey(p.id), "pack disappeared during the check")
			c.addRefs(i, p.refs)
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.report.PacksRead++
		c.report.BytesRead += int64(len(data))
		c.mu.Unlock()
		c.verifyPack(p, data)
		return nil
	})
}

// verifyPack checks a whole pack: its name, its table, and every needed
// chunk decoded and hashed.
func (c *checker) verifyPack(p *checkPack, data []byte) {
	key := packKey(p.id)
	report := func(kind, detail string) {
		i := c.add(kind, firstRef(p.refs), key, detail)
		c.addRefs(i, p.refs)
	}
	// A pack is named by the hash of its tail (pack.TailID), or, written
	// by earlier versions, of all its bytes.
	if tail, err := pack.TailID(data); err != nil || tail != p.id {
		if whole := chunk.Sum(data); whole != p.id {
			report(ProblemCorruptPack, "pack tail hashes to "+tail.String()+", pack bytes to "+whole.String())
		}
	}
	if _, err := pack.ParseTail(data, int64(len(data))); err != nil {
		report(ProblemCorruptPack, "pack table: "+err.Error())
	}
	entries := slices.Clone(p.entries)
	slices.SortFunc(entries, func(a, b pack.Entry) int {
		if a.BlockOffset != b.BlockOffset {
			return cmpU64(a.BlockOffset, b.BlockOffset)
		}
		return int(a.Offset) - int(b.Offset)
	})
	bad, first := c.extract(data, entries)
	if bad > 0 {
		report(ProblemCorruptChunk, fmt.Sprintf("%d of %d needed chunks do not decode or verify (first %s)", bad, len(entries), first))
	}
}

// extract decodes and hashes entries out of the whole pack data and
// returns how many fail and the first failure. It tries the whole pack in
// one pass and falls back to block by block to count the bad ones.
func (c *checker) extract(data []byte, entries []pack.Entry) (int, string) {
	size := uint64(len(data))
	// ExtractChunks hashes every chunk against its ID before calling back.
	verify := func(pack.Entry, []byte) error { return nil }
	var inRange []pack.Entry
	bad, first := 0, ""
	for _, e := range entries {
		if e.BlockEnd() > size {
			if bad == 0 {
				first = fmt.Sprintf("%s: block ends at %d, pack has %d bytes", e.ID, e.BlockEnd(), size)
			}
			bad++
			continue
		}
		inRange = append(inRange, e)
	}
	if len(inRange) == 0 || pack.ExtractChunks(data, 0, inRange, verify) == nil {
		return bad, first
	}
	for lo := 0; lo < len(inRange); {
		hi := lo + 1
		for hi < len(inRange) && inRange[hi].BlockOffset == inRange[lo].BlockOffset {
			hi++
		}
		block := inRange[lo:hi]
		if err := pack.ExtractChunks(data, 0, block, verify); err != nil {
			// One bad chunk spoils its block's decode; check them one by one.
			for _, e := range block {
				if err := pack.ExtractChunks(data, 0, []pack.Entry{e}, verify); err != nil {
					if bad == 0 {
						first = fmt.Sprintf("%s: %v", e.ID, err)
					}
					bad++
				}
			}
		}
		lo = hi
	}
	return bad, first
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// eachPack runs fn on every needed pack with at most workers at once,
// stopping at the first error.
func (c *checker) eachPack(ctx context.Context, phase string, workers int, fn func(context.Context, *checkPack) error) error {
	total := int64(len(c.packs))
	if total == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		done int64
	)
	for range min(max(workers, 1), len(c.packs)) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(c.packs) || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, c.packs[i]); err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				done++
				c.progress(phase, done, total) // under mu: callbacks never overlap
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}
