package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/pack"
)

// DefaultGCGrace is the grace period T of garbage collection (docs/GC.md).
const DefaultGCGrace = time.Hour

// ErrConcurrentGC: a push depends on a recipe or blob descriptor (or on
// chunks) that a garbage collection run condemned long enough ago that it
// may delete them before the push's manifest is visible. Nothing was
// written that names them; retry after the next gc run.
var ErrConcurrentGC = errors.New("content condemned by a concurrent garbage collection; retry")

// WithGCGrace sets the grace period T this registry's pushes assume (default
// 1 h): they re-upload chunks that gc plans older than T/2 condemn, and they
// give up on a manifest write that has not finished T/4 after their commit
// check. Every pusher's T must be at most the T of every gc run
// (GCOptions.Grace): pushers and gc must agree.
func WithGCGrace(d time.Duration) Option {
	return func(o *options) error {
		if d < 4*time.Millisecond {
			return fmt.Errorf("gc grace %v too short", d)
		}
		o.gcGrace = d
		return nil
	}
}

// GCOptions tune GC.
type GCOptions struct {
	// KeepLast keeps the newest KeepLast revisions (manifests by digest) of
	// each repository and deletes the older ones with the tags naming them;
	// 0 applies no retention.
	KeepLast int
	// KeepTags are path.Match patterns matched against "tag" and
	// "name:tag": the revisions of matching tags are always kept.
	KeepTags []string
	// Grace is the grace period T (0: the registry's WithGCGrace, default
	// 1 h). It must be at least every pusher's.
	Grace time.Duration
	// RewriteBelow: a pack whose live share (raw bytes of live chunks over
	// all) is below it has its live chunks copied to a new pack and is
	// condemned (0: 0.5; negative: never rewrite).
	RewriteBelow float64
	// DryRun reports what would be done and changes nothing.
	DryRun bool
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// GCReport is what a GC run did (or, with DryRun, would do).
type GCReport struct {
	DryRun       bool    `json:"dry_run"`
	GraceSeconds float64 `json:"grace_seconds"`
	RewriteBelow float64 `json:"rewrite_below"`

	ManifestsDeleted int `json:"manifests_deleted"` // by retention: digest manifests
	TagsDeleted      int `json:"tags_deleted"`      // by retention
	Manifests        int `json:"manifests"`         // roots after retention

	PlansExecuted int    `json:"plans_executed"`
	PlansPending  int    `json:"plans_pending"` // plans younger than the grace period, left for a later run
	Plan          string `json:"plan,omitempty"`
	Tombstone     string `json:"tombstone,omitempty"`

	PacksCondemned       int `json:"packs_condemned"`
	PacksRewritten       int `json:"packs_rewritten"`
	PacksWritten         int `json:"packs_written"` // new packs holding rewritten chunks
	PacksDeleted         int `json:"packs_deleted"`
	PacksSpared          int `json:"packs_spared"` // condemned, found live again, kept
	RecipesCondemned     int `json:"recipes_condemned"`
	RecipesDeleted       int `json:"recipes_deleted"`
	DescriptorsCondemned int `json:"descriptors_condemned"`
	DescriptorsDeleted   int `json:"descriptors_deleted"`

	Packs          int     `json:"packs"`           // packs before the run
	BytesBefore    int64   `json:"bytes_before"`    // sum of pack sizes before the run
	BytesAfter     int64   `json:"bytes_after"`     // and after it
	BytesDeleted   int64   `json:"bytes_deleted"`   // pack bytes deleted
	BytesWritten   int64   `json:"bytes_written"`   // pack bytes written by rewrites
	BytesCondemned int64   `json:"bytes_condemned"` // pack bytes condemned by this run's plan
	LiveChunks     int64   `json:"live_chunks"`
	LiveBytes      int64   `json:"live_bytes"`     // raw bytes of the distinct live chunks
	MissingChunks  int64   `json:"missing_chunks"` // live chunks no pack holds (see check)
	Seconds        float64 `json:"seconds"`
}

// gcRecord is a plan (gc/plans/) or a tombstone (gc/deleted/).
type gcRecord struct {
	Version     int       `json:"version"`
	Created     time.Time `json:"created"`
	Packs       []string  `json:"packs,omitempty"`
	Recipes     []string  `json:"recipes,omitempty"`
	Descriptors []string  `json:"descriptors,omitempty"`

	key       string
	modTime   time.Time
	packIDs   []chunk.ID
	recipeIDs []chunk.ID
}

// oldest and newest bound the record's age under either clock (the gc's,
// written in it, and the store's): pushers take the older reading, gc the
// younger, so clock differences err on the safe side.
func (g *gcRecord) oldest() time.Time {
	if g.modTime.IsZero() || g.Created.Before(g.modTime) {
		return g.Created
	}
	return g.modTime
}

func (g *gcRecord) newest() time.Time {
	if g.modTime.After(g.Created) {
		return g.modTime
	}
	return g.Created
}

func parseGCRecord(key string, data []byte) (*gcRecord, error) {
	var g gcRecord
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorruptStore, key, err)
	}
	if g.Version != 1 || g.Created.IsZero() {
		return nil, fmt.Errorf("%w: %s: version %d, created %v", ErrCorruptStore, key, g.Version, g.Created)
	}
	for _, s := range g.Packs {
		id, err := chunk.ParseID(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptStore, key, err)
		}
		g.packIDs = append(g.packIDs, id)
	}
	for _, s := range g.Recipes {
		id, err := chunk.ParseID(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptStore, key, err)
		}
		g.recipeIDs = append(g.recipeIDs, id)
	}
	for _, d := range g.Descriptors {
		if _, err := validateDigest(d); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptStore, key, err)
		}
	}
	g.key = key
	return &g, nil
}

// listKeys lists the objects under dir.
func (r *Registry) listKeys(ctx context.Context, dir string) ([]objectstore.ObjectInfo, error) {
	var out []objectstore.ObjectInfo
	err := r.store.List(ctx, dir, func(oi objectstore.ObjectInfo) error {
		out = append(out, oi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return out, nil
}

// readGCRecord reads a plan or tombstone, once per registry (they are
// immutable); nil when it is gone.
func (r *Registry) readGCRecord(ctx context.Context, oi objectstore.ObjectInfo) (*gcRecord, error) {
	r.gcMu.Lock()
	rec, ok := r.gcRecs[oi.Key]
	r.gcMu.Unlock()
	if ok {
		return rec, nil
	}
	data, got, err := r.store.GetBytes(ctx, oi.Key, maxGCRecord)
	if errors.Is(err, objectstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", oi.Key, err)
	}
	if rec, err = parseGCRecord(oi.Key, data); err != nil {
		return nil, err
	}
	rec.modTime = oi.ModTime
	if rec.modTime.IsZero() {
		rec.modTime = got.ModTime
	}
	r.gcMu.Lock()
	r.gcRecs[oi.Key] = rec
	r.gcMu.Unlock()
	return rec, nil
}

// listPlans reads every gc plan in the store.
func (r *Registry) listPlans(ctx context.Context) ([]*gcRecord, error) {
	infos, err := r.listKeys(ctx, gcPlanDir)
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	var plans []*gcRecord
	for _, oi := range infos {
		listed[oi.Key] = true
		rec, err := r.readGCRecord(ctx, oi)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			plans = append(plans, rec)
		}
	}
	r.gcMu.Lock()
	for k := range r.gcRecs {
		if strings.HasPrefix(k, gcPlanDir) && !listed[k] {
			delete(r.gcRecs, k) // executed: forget it
		}
	}
	r.gcMu.Unlock()
	return plans, nil
}

// writeGCRecord writes a plan or tombstone create-only under a fresh key.
func (r *Registry) writeGCRecord(ctx context.Context, dir string, rec *gcRecord) (string, error) {
	rec.Version = 1
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	key := fmt.Sprintf("%s%019d-%s.json", dir, rec.Created.UnixNano(), hex.EncodeToString(rnd[:]))
	if _, err := r.store.PutBytes(ctx, key, data, objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		return "", fmt.Errorf("write %s: %w", key, err)
	}
	return key, nil
}

// newPackWriter starts a pack with a random salt chunk, so that no two
// packs ever get the same ID (the hash of the table, which names the salt). Without it, a push that
// uploads again the chunks of a pack gc condemned or deleted could produce
// a byte-identical pack: its create-only write would find the condemned
// pack and succeed, or its ID would be one every node refuses as deleted.
func (r *Registry) newPackWriter(opts ...pack.Option) (*pack.Writer, error) {
	opts = append([]pack.Option{pack.WithEncoder(r.enc), pack.WithSizeHint(int(r.opts.packSize) + 1<<20)}, opts...)
	w, err := pack.NewWriter(opts...)
	if err != nil {
		return nil, err
	}
	var salt [16]byte
	_, _ = rand.Read(salt[:])
	if err := w.Add(chunk.Sum(salt[:]), salt[:]); err != nil {
		return nil, err
	}
	return w, nil
}

// gcGuard is what a push learnt about gc when it started.
type gcGuard struct {
	tombs     map[string]time.Time // tombstones listed at the start
	condemned map[chunk.ID]bool    // packs condemned by any plan then
}

// startPush lists the gc plans, then syncs the index (tombstones, index
// objects): in that order, a plan executed before the listing has its
// tombstone seen by the sync.
func (r *Registry) startPush(ctx context.Context) (*gcGuard, error) {
	plans, err := r.listPlans(ctx)
	if err != nil {
		return nil, err
	}
	tombs, err := r.syncStore(ctx)
	if err != nil {
		return nil, err
	}
	g := &gcGuard{tombs: tombs, condemned: map[chunk.ID]bool{}}
	for _, p := range plans {
		for _, id := range p.packIDs {
			g.condemned[id] = true
		}
	}
	if len(g.condemned) > 0 {
		// LookupManyAccept sees every location only once merged.
		if err := r.idx.Merge(); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// gcSet is what some plans or tombstones name.
type gcSet struct {
	packs   map[chunk.ID]bool
	recipes map[chunk.ID]bool
	descs   map[string]bool
}

func newGCSet() gcSet {
	return gcSet{packs: map[chunk.ID]bool{}, recipes: map[chunk.ID]bool{}, descs: map[string]bool{}}
}

func (s gcSet) add(g *gcRecord) {
	for _, id := range g.packIDs {
		s.packs[id] = true
	}
	for _, id := range g.recipeIDs {
		s.recipes[id] = true
	}
	for _, d := range g.Descriptors {
		s.descs[d] = true
	}
}

func (s gcSet) empty() bool { return len(s.packs)+len(s.recipes)+len(s.descs) == 0 }

// commitCheck runs right before a push makes a manifest or blob descriptor
// visible (GC.md, "A push"). It lists the plans (at time c), syncs the
// index, and compares what the push depends on with the plans older than
// T/2 at c and the tombstones written since the push started (g; nil: in
// the last T): a condemned or deleted recipe or descriptor fails with
// ErrConcurrentGC; chunks located only in condemned packs are copied into a
// fresh pack; chunks no longer located anywhere fail with ErrConcurrentGC.
// It returns the deadline of the write: c + T/4.
func (r *Registry) commitCheck(ctx context.Context, g *gcGuard, recipes []chunk.ID, digests []string, known map[chunk.ID]*manifest.Recipe) (time.Time, error) {
	if err := r.init(ctx); err != nil {
		return time.Time{}, err
	}
	grace := r.opts.gcGrace
	c := time.Now()
	old, gone, err := r.commitSets(ctx, g, c, grace)
	if err != nil {
		return time.Time{}, err
	}
	deadline := c.Add(grace / 4)
	if old.empty() && gone.empty() {
		return deadline, nil
	}
	for _, d := range digests {
		if old.descs[d] || gone.descs[d] {
			return time.Time{}, fmt.Errorf("%w: blob descriptor %s", ErrConcurrentGC, d)
		}
	}
	needChains := len(old.recipes)+len(gone.recipes) > 0
	needChunks := len(old.packs)+len(gone.packs) > 0
	if !needChains && !needChunks {
		return deadline, nil
	}
	ids, err := r.commitRecipes(ctx, recipes, known, old, gone, needChains, needChunks)
	if err != nil {
		return time.Time{}, err
	}
	if !needChunks || len(ids) == 0 {
		return deadline, nil
	}
	if err := r.rescueChunks(ctx, ids, old); err != nil {
		return time.Time{}, err
	}
	return deadline, nil
}

// commitSets is the first step of commitCheck: it lists the plans, syncs the
// index and returns what the plans older than grace/2 at c condemn (old)
// and what the tombstones written since the push started (g; nil: in the
// last grace) deleted (gone).
func (r *Registry) commitSets(ctx context.Context, g *gcGuard, c time.Time, grace time.Duration) (old, gone gcSet, err error) {
	plans, err := r.listPlans(ctx)
	if err != nil {
		return gcSet{}, gcSet{}, err
	}
	tombs, err := r.syncStore(ctx)
	if err != nil {
		return gcSet{}, gcSet{}, err
	}
	old, gone = newGCSet(), newGCSet()
	for _, p := range plans {
		if c.Sub(p.oldest()) >= grace/2 {
			old.add(p)
		}
	}
	for key, mod := range tombs {
		if _, seen := g.tombsHas(key); seen || (g == nil && c.Sub(mod) > grace) {
			continue // known at the start of the push, or (no start) long past
		}
		rec, err := r.readGCRecord(ctx, objectstore.ObjectInfo{Key: key, ModTime: mod})
		if err != nil {
			return gcSet{}, gcSet{}, err
		}
		if rec != nil {
			gone.add(rec)
		}
	}
	return old, gone, nil
}

// commitRecipes is commitCheck's recipe step: with needChains (or when
// known lacks a recipe) it loads each recipe's chain and fails with
// ErrConcurrentGC when a link is condemned or deleted; with needChunks it
// returns the distinct non-zero chunks the recipes name, in order.
func (r *Registry) commitRecipes(ctx context.Context, recipes []chunk.ID, known map[chunk.ID]*manifest.Recipe, old, gone gcSet, needChains, needChunks bool) ([]chunk.ID, error) {
	chunkSet := map[chunk.ID]bool{}
	var ids []chunk.ID
	addChunks := func(rec *manifest.Recipe) {
		for _, e := range rec.Extents {
			if !e.Zero && !chunkSet[e.ID] {
				chunkSet[e.ID] = true
				ids = append(ids, e.ID)
			}
		}
	}
	done := map[chunk.ID]bool{}
	for _, rid := range recipes {
		if done[rid] {
			continue
		}
		done[rid] = true
		rec := known[rid]
		if needChains || rec == nil {
			chain, resolved, err := r.loadRecipeChain(ctx, rid)
			if err != nil {
				if errors.Is(err, ErrCorruptStore) {
					return nil, fmt.Errorf("%w: recipe %s: %w", ErrConcurrentGC, rid, err)
				}
				return nil, err
			}
			for _, id := range chain {
				if old.recipes[id] || gone.recipes[id] {
					return nil, fmt.Errorf("%w: recipe %s", ErrConcurrentGC, id)
				}
			}
			rec = resolved
		}
		if needChunks {
			addChunks(rec)
		}
	}
	return ids, nil
}

// rescueChunks is commitCheck's chunk step: chunks of ids located only in
// packs old condemns are copied into a fresh pack; chunks no longer located
// anywhere fail with ErrConcurrentGC.
func (r *Registry) rescueChunks(ctx context.Context, ids []chunk.ID, old gcSet) error {
	if err := r.idx.Merge(); err != nil {
		return err
	}
	var missing []chunk.ID
	err := r.idx.LookupManyAccept(ids, func(p chunk.ID) bool { return !old.packs[p] }, func(i int, _ index.Location, ok bool) {
		if !ok {
			missing = append(missing, ids[i])
		}
	})
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	want := map[chunk.ID][]pack.Entry{}
	var lost []chunk.ID
	err = r.idx.LookupMany(missing, func(i int, loc index.Location, ok bool) {
		if !ok {
			lost = append(lost, missing[i])
			return
		}
		want[loc.Pack] = append(want[loc.Pack], pack.Entry{ID: missing[i], BlockOffset: loc.BlockOffset, BlockLength: loc.BlockLength, Offset: loc.Offset, Length: loc.Length})
	})
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		return fmt.Errorf("%w: %d chunks were deleted (first %s)", ErrConcurrentGC, len(lost), lost[0])
	}
	if _, _, err := r.copyChunks(ctx, want); err != nil {
		if errors.Is(err, objectstore.ErrNotFound) {
			return fmt.Errorf("%w: %w", ErrConcurrentGC, err)
		}
		return fmt.Errorf("copy chunks out of condemned packs: %w", err)
	}
	return nil
}

// tombsHas reports whether the guard listed the tombstone at its start.
func (g *gcGuard) tombsHas(key string) (time.Time, bool) {
	if g == nil {
		return time.Time{}, false
	}
	t, ok := g.tombs[key]
	return t, ok
}

// manifestDeps returns the recipes and blob descriptors a manifest names.
func manifestDeps(m *manifest.Manifest) ([]chunk.ID, []string) {
	var recipes []chunk.ID
	var digests []string
	for _, l := range append(slices.Clone(m.Layers), m.BaseImages...) {
		if l.Recipe == "" {
			continue // a legacy whole blob: gc never deletes those
		}
		if id, err := chunk.ParseID(l.Recipe); err == nil {
			recipes = append(recipes, id)
		}
		digests = append(digests, l.Digest)
	}
	return recipes, digests
}

// copyChunks copies chunks out of packs (want: source pack -> entries)
// into fresh packs, writes their index object and records them in the
// node index. It returns the new packs and their total size.
func (r *Registry) copyChunks(ctx context.Context, want map[chunk.ID][]pack.Entry) ([]index.PackRecord, int64, error) {
	var (
		records []index.PackRecord
		total   int64
		w       *pack.Writer
		added   = map[chunk.ID]bool{}
	)
	flush := func() error {
		if w == nil {
			return nil
		}
		data, entries, err := w.Finish()
		id := w.ID()
		w = nil
		if err != nil {
			return err
		}
		if err := r.putImmutable(ctx, packKey(id), data); err != nil {
			return fmt.Errorf("upload pack %s: %w", id, err)
		}
		pe := make([]index.PackEntry, len(entries))
		for i, e := range entries {
			pe[i] = index.PackEntry{ID: e.ID, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length}
		}
		records = append(records, index.PackRecord{Pack: id, Size: int64(len(data)), Entries: pe})
		total += int64(len(data))
		return nil
	}
	packs := make([]chunk.ID, 0, len(want))
	for id := range want {
		packs = append(packs, id)
	}
	slices.SortFunc(packs, func(a, b chunk.ID) int { return strings.Compare(a.String(), b.String()) })
	for _, src := range packs {
		for _, run := range pack.PlanRuns(want[src], 256<<10) {
			rc, err := r.store.Get(ctx, packKey(src), int64(run.Offset), int64(run.Length))
			if err != nil {
				return nil, 0, fmt.Errorf("read pack %s: %w", src, err)
			}
			span, err := io.ReadAll(io.LimitReader(rc, int64(run.Length)+1))
			_ = rc.Close()
			if err != nil {
				return nil, 0, fmt.Errorf("read pack %s: %w", src, err)
			}
			err = pack.ExtractChunks(span, run.Offset, run.Entries, func(e pack.Entry, data []byte) error {
				if added[e.ID] {
					return nil
				}
				added[e.ID] = true
				if w == nil {
					var err error
					if w, err = r.newPackWriter(); err != nil {
						return err
					}
				}
				if err := w.Add(e.ID, data); err != nil {
					return err
				}
				if w.Size() >= r.opts.packSize {
					return flush()
				}
				return nil
			})
			if err != nil {
				return nil, 0, fmt.Errorf("copy chunks of pack %s: %w", src, err)
			}
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	if len(records) == 0 {
		return nil, 0, nil
	}
	if _, err := r.writeIndexObject(ctx, records); err != nil {
		return nil, 0, err
	}
	return records, total, nil
}

// loadRecipeChain is loadRecipe reading the store itself, never the
// node's cache, and returning the IDs of the chain's objects, from id down
// to the full recipe.
func (r *Registry) loadRecipeChain(ctx context.Context, id chunk.ID) ([]chunk.ID, *manifest.Recipe, error) {
	return r.resolveRecipe(ctx, id, r.storeRecipeBytes)
}

// gcDeadline marks an error caused by the commit deadline as retryable.
func gcDeadline(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: not written within the gc deadline: %w", ErrConcurrentGC, err)
	}
	return err
}

// gcRun is the state of one GC call.
type gcRun struct {
	r     *Registry
	opts  GCOptions
	now   time.Time
	grace time.Duration
	below float64
	rep   *GCReport

	gone map[string]bool // manifest keys retention deleted (or would, dry)

	deletedRecipes map[chunk.ID]bool // by this run's phase 2 (or would be, dry)

	liveDescs   map[string]bool
	liveRecipes map[chunk.ID]bool
	liveChunks  map[chunk.ID]bool
	descInfo    map[string]objectstore.ObjectInfo

	packInfo map[chunk.ID]objectstore.ObjectInfo // packs in the store
	stats    map[chunk.ID]*gcPackStat            // packs in the index
	holders  map[chunk.ID]int32                  // live chunk -> packs holding it
}

type gcPackStat struct {
	size       int64
	total      int64 // raw bytes of its chunks
	live       int64 // raw bytes of its live chunks
	liveChunks []index.PackEntry
}

// GC deletes what no kept manifest needs, without a lock (docs/GC.md): it
// syncs the index, applies retention, marks what the remaining manifests
// and the blob descriptors younger than the grace period T need, executes
// the plans of earlier runs older than T (a tombstone, then the deletions,
// then the plan), and condemns, in a new plan, what is older than T and not
// live, first copying the live chunks of mostly dead packs to new packs.
// Pushes running meanwhile are safe as long as their WithGCGrace is at most
// opts.Grace. A condemned object is deleted by a later run, at least T
// after it was condemned, and only if still not live then.
func (r *Registry) GC(ctx context.Context, opts GCOptions) (*GCReport, error) {
	start := time.Now()
	if err := r.init(ctx); err != nil {
		return nil, err
	}
	if opts.KeepLast < 0 {
		return nil, fmt.Errorf("gc: keep-last %d is negative", opts.KeepLast)
	}
	for _, p := range opts.KeepTags {
		if _, err := pathMatch(p, ""); err != nil {
			return nil, fmt.Errorf("gc: keep-tag pattern %q: %w", p, err)
		}
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	g := &gcRun{
		r: r, opts: opts, now: clock(), grace: opts.Grace, below: opts.RewriteBelow,
		gone: map[string]bool{}, liveDescs: map[string]bool{}, liveRecipes: map[chunk.ID]bool{},
		liveChunks: map[chunk.ID]bool{}, descInfo: map[string]objectstore.ObjectInfo{},
		packInfo: map[chunk.ID]objectstore.ObjectInfo{}, stats: map[chunk.ID]*gcPackStat{}, holders: map[chunk.ID]int32{},
	}
	if g.grace == 0 {
		g.grace = r.opts.gcGrace
	}
	if g.grace < 0 {
		return nil, fmt.Errorf("gc: negative grace %v", g.grace)
	}
	if g.below == 0 {
		g.below = 0.5
	}
	g.rep = &GCReport{DryRun: opts.DryRun, GraceSeconds: g.grace.Seconds(), RewriteBelow: max(g.below, 0)}

	// 1. Plans first, then the index (tombstones, index objects).
	plans, err := r.listPlans(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if err := r.syncIndex(ctx); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	// 2. Retention.
	if opts.KeepLast > 0 {
		if err := g.retain(ctx); err != nil {
			return nil, fmt.Errorf("gc: retention: %w", err)
		}
	}
	// 3. Mark.
	if err := g.mark(ctx); err != nil {
		return nil, fmt.Errorf("gc: mark: %w", err)
	}
	if err := g.packTable(ctx); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	// 4. Execute the plans older than T.
	var due, pending []*gcRecord
	for _, p := range plans {
		if g.now.Sub(p.newest()) >= g.grace {
			due = append(due, p)
		} else {
			pending = append(pending, p)
		}
	}
	deleted, err := g.execute(ctx, due)
	if err != nil {
		return nil, fmt.Errorf("gc: execute plans: %w", err)
	}
	// 5. Condemn.
	if err := g.condemn(ctx, pending, deleted); err != nil {
		return nil, fmt.Errorf("gc: condemn: %w", err)
	}
	g.rep.BytesAfter = g.rep.BytesBefore - g.rep.BytesDeleted + g.rep.BytesWritten
	g.rep.Seconds = time.Since(start).Seconds()
	return g.rep, nil
}

// revision is one manifest revision of a repository.
type revision struct {
	digest string
	when   time.Time
	key    string // its digest manifest, "" when only a tag names it
}

// retain deletes, per repository, the revisions older than the newest
// KeepLast, with the tags naming them, except the revisions of KeepTags.
func (g *gcRun) retain(ctx context.Context) error {
	revs, tags, err := g.readRevisions(ctx)
	if err != nil {
		return err
	}
	drop := g.retainDrop(revs, tags)
	// Tags first (catalog, then the object), then the digest manifests:
	// an interruption leaves a manifest the catalog does not list, never a
	// catalog entry without its manifest.
	if err := g.deleteTags(ctx, tags, drop); err != nil {
		return err
	}
	return g.deleteRevisions(ctx, revs, drop)
}

// tagRef is a tag manifest retain read: the repository, the tag, its key
// and the digest of the revision it names.
type tagRef struct{ name, tag, key, digest string }

// readRevisions reads every manifest and returns the revisions per
// repository (repo -> digest -> revision) and the tags naming them.
func (g *gcRun) readRevisions(ctx context.Context) (map[string]map[string]*revision, []tagRef, error) {
	r := g.r
	infos, err := r.listKeys(ctx, manifestDir)
	if err != nil {
		return nil, nil, err
	}
	revs := map[string]map[string]*revision{} // repo -> digest -> revision
	var tags []tagRef
	for _, oi := range infos {
		ref, ok := parseManifestKey(oi.Key)
		if !ok {
			continue
		}
		data, _, err := r.store.GetBytes(ctx, oi.Key, maxManifest)
		if errors.Is(err, objectstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		m, err := manifest.Parse(data)
		if err != nil {
			continue // check reports it; it names nothing gc could follow
		}
		digest := manifest.Digest(data)
		when := m.PushedAt
		if when.IsZero() {
			when = m.CreatedAt
		}
		if when.IsZero() {
			when = oi.ModTime
		}
		if revs[ref.name] == nil {
			revs[ref.name] = map[string]*revision{}
		}
		rv := revs[ref.name][digest]
		if rv == nil {
			rv = &revision{digest: digest, when: when}
			revs[ref.name][digest] = rv
		}
		if ref.tag == "" {
			rv.key = oi.Key
		} else {
			tags = append(tags, tagRef{name: ref.name, tag: ref.tag, key: oi.Key, digest: digest})
		}
	}
	return revs, tags, nil
}

// retainDrop returns the revisions to drop (repo + "@" + digest): per
// repository, those older than the newest KeepLast, except the ones a tag
// matching KeepTags names.
func (g *gcRun) retainDrop(revs map[string]map[string]*revision, tags []tagRef) map[string]bool {
	protected := map[string]bool{} // repo + "@" + digest
	for _, t := range tags {
		for _, p := range g.opts.KeepTags {
			a, _ := pathMatch(p, t.tag)
			b, _ := pathMatch(p, t.name+":"+t.tag)
			if a || b {
				protected[t.name+"@"+t.digest] = true
			}
		}
	}
	drop := map[string]bool{} // repo + "@" + digest
	for name, byDigest := range revs {
		list := make([]*revision, 0, len(byDigest))
		for _, rv := range byDigest {
			list = append(list, rv)
		}
		slices.SortFunc(list, func(a, b *revision) int {
			if c := b.when.Compare(a.when); c != 0 {
				return c
			}
			return strings.Compare(b.digest, a.digest)
		})
		for i, rv := range list {
			if i >= g.opts.KeepLast && !protected[name+"@"+rv.digest] {
				drop[name+"@"+rv.digest] = true
			}
		}
	}
	return drop
}

// deleteTags deletes the tags naming dropped revisions: from the catalog,
// then the tag object.
func (g *gcRun) deleteTags(ctx context.Context, tags []tagRef, drop map[string]bool) error {
	r := g.r
	for _, t := range tags {
		if !drop[t.name+"@"+t.digest] {
			continue
		}
		g.rep.TagsDeleted++
		g.gone[t.key] = true
		if g.opts.DryRun {
			continue
		}
		err := r.updateCatalog(ctx, func(c *manifest.Catalog) bool {
			repo := c.Repositories[t.name]
			if repo == nil || repo.Tags[t.tag] != t.digest {
				return false
			}
			delete(repo.Tags, t.tag)
			repo.UpdatedAt = time.Now().UTC()
			if len(repo.Tags) == 0 {
				delete(c.Repositories, t.name)
			}
			return true
		})
		if err != nil {
			return err
		}
		// A push may have moved the tag since it was read: delete it only
		// while it still names the dropped revision.
		data, _, err := r.store.GetBytes(ctx, t.key, maxManifest)
		if errors.Is(err, objectstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if manifest.Digest(data) != t.digest {
			g.rep.TagsDeleted--
			delete(g.gone, t.key)
			continue
		}
		if err := r.store.Delete(ctx, t.key); err != nil {
			return err
		}
	}
	return nil
}

// deleteRevisions deletes the digest manifests of dropped revisions.
func (g *gcRun) deleteRevisions(ctx context.Context, revs map[string]map[string]*revision, drop map[string]bool) error {
	for name, byDigest := range revs {
		for d, rv := range byDigest {
			if !drop[name+"@"+d] || rv.key == "" {
				continue
			}
			g.rep.ManifestsDeleted++
			g.gone[rv.key] = true
			if g.opts.DryRun {
				continue
			}
			if err := g.r.store.Delete(ctx, rv.key); err != nil {
				return err
			}
		}
	}
	return nil
}

// mark computes what is live: the recipe chains and chunks of every
// manifest (by tag and by digest) and of every blob descriptor younger than
// T or named by a manifest.
func (g *gcRun) mark(ctx context.Context) error {
	r := g.r
	infos, err := r.listKeys(ctx, manifestDir)
	if err != nil {
		return err
	}
	roots := map[chunk.ID]bool{}
	for _, oi := range infos {
		if _, ok := parseManifestKey(oi.Key); !ok || g.gone[oi.Key] {
			continue
		}
		data, _, err := r.store.GetBytes(ctx, oi.Key, maxManifest)
		if errors.Is(err, objectstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := manifest.Parse(data)
		if err != nil {
			continue // names nothing that could be followed; check reports it
		}
		g.rep.Manifests++
		for _, l := range append(slices.Clone(m.Layers), m.BaseImages...) {
			g.liveDescs[l.Digest] = true
			if l.Recipe == "" {
				continue
			}
			id, err := chunk.ParseID(l.Recipe)
			if err != nil {
				return fmt.Errorf("%w: manifest %s: recipe %q: %w", ErrCorruptStore, oi.Key, l.Recipe, err)
			}
			roots[id] = true
		}
	}
	descs, err := r.listKeys(ctx, descriptorDir)
	if err != nil {
		return err
	}
	for _, oi := range descs {
		d, ok := strings.CutSuffix(strings.TrimPrefix(oi.Key, descriptorDir), ".json")
		if !ok {
			continue
		}
		if _, err := validateDigest(d); err != nil {
			continue
		}
		g.descInfo[d] = oi
		if g.now.Sub(oi.ModTime) < g.grace {
			g.liveDescs[d] = true
		}
	}
	for d := range g.liveDescs {
		if _, ok := g.descInfo[d]; !ok {
			continue // legacy whole blob, or missing (check reports it)
		}
		desc, legacy, _, err := r.readDescriptor(ctx, d)
		if errors.Is(err, ErrBlobNotFound) || legacy {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w (run check; gc needs every live object readable)", err)
		}
		id, _ := chunk.ParseID(desc.Recipe) // readDescriptor checked it
		roots[id] = true
	}
	for id := range roots {
		chain, rec, err := r.loadRecipeChain(ctx, id)
		if err != nil {
			return fmt.Errorf("%w (run check; gc needs every live object readable)", err)
		}
		for _, c := range chain {
			g.liveRecipes[c] = true
		}
		for _, e := range rec.Extents {
			if !e.Zero {
				g.liveChunks[e.ID] = true
			}
		}
	}
	// Index objects precede their manifests: syncing after the listing
	// sees those of every manifest marked.
	return r.syncIndex(ctx)
}

// packTable lists the packs and measures their live share.
func (g *gcRun) packTable(ctx context.Context) error {
	infos, err := g.r.listKeys(ctx, packDir)
	if err != nil {
		return err
	}
	for _, oi := range infos {
		s := oi.Key[strings.LastIndexByte(oi.Key, '/')+1:]
		id, err := chunk.ParseID(s)
		if err != nil || packKey(id) != oi.Key {
			continue
		}
		g.packInfo[id] = oi
		g.rep.Packs++
		g.rep.BytesBefore += oi.Size
	}
	seen := map[chunk.ID]bool{}
	err = g.r.idx.ForEachPack(func(p index.PackRecord) error {
		if _, ok := g.packInfo[p.Pack]; !ok {
			// Not in the store (or written since the listing): it holds
			// nothing gc may count on, and is no candidate.
			return nil
		}
		st := &gcPackStat{size: p.Size}
		for _, e := range p.Entries {
			st.total += int64(e.Length)
			if !g.liveChunks[e.ID] {
				continue
			}
			st.live += int64(e.Length)
			st.liveChunks = append(st.liveChunks, e)
			g.holders[e.ID]++
			if !seen[e.ID] {
				seen[e.ID] = true
				g.rep.LiveBytes += int64(e.Length)
			}
		}
		g.stats[p.Pack] = st
		return nil
	})
	if err != nil {
		return err
	}
	g.rep.LiveChunks = int64(len(seen))
	g.rep.MissingChunks = int64(len(g.liveChunks) - len(seen))
	return nil
}

// execute carries out the plans older than T: what they condemned and is
// still not live is named in a tombstone, deleted, and the plans removed.
// A pack is kept when it holds a live chunk no surviving pack holds.
func (g *gcRun) execute(ctx context.Context, due []*gcRecord) (map[chunk.ID]bool, error) {
	r := g.r
	g.rep.PlansExecuted = len(due)
	packs, recipes, descs := g.dueSets(due)
	g.sparePacks(packs)
	for id := range packs {
		g.rep.PacksDeleted++
		g.rep.BytesDeleted += g.packInfo[id].Size
	}
	g.rep.RecipesDeleted, g.rep.DescriptorsDeleted = len(recipes), len(descs)
	for d := range descs {
		delete(g.descInfo, d) // gone: not to be condemned again below
	}
	g.deletedRecipes = recipes
	if g.opts.DryRun || len(due) == 0 {
		return packs, nil
	}
	if len(packs)+len(recipes)+len(descs) > 0 {
		if err := g.deleteDue(ctx, packs, recipes, descs); err != nil {
			return nil, err
		}
	}
	for _, p := range due {
		if err := r.store.Delete(ctx, p.key); err != nil {
			return nil, err
		}
	}
	return packs, nil
}

// dueSets returns what the due plans condemned and is still there (packs)
// or still not live (recipes, descriptors).
func (g *gcRun) dueSets(due []*gcRecord) (packs, recipes map[chunk.ID]bool, descs map[string]bool) {
	r := g.r
	packs = map[chunk.ID]bool{}
	recipes = map[chunk.ID]bool{}
	descs = map[string]bool{}
	for _, p := range due {
		for _, id := range p.packIDs {
			if _, inStore := g.packInfo[id]; inStore || r.idx.HasPack(id) {
				packs[id] = true
			}
		}
		for _, id := range p.recipeIDs {
			if !g.liveRecipes[id] {
				recipes[id] = true
			}
		}
		for _, d := range p.Descriptors {
			if !g.liveDescs[d] {
				descs[d] = true
			}
		}
	}
	return packs, recipes, descs
}

// sparePacks removes from packs (to be deleted) every pack holding a live
// chunk no surviving pack holds, in pack ID order.
func (g *gcRun) sparePacks(packs map[chunk.ID]bool) {
	// outside[c]: packs holding live chunk c that are not to be deleted.
	outside := map[chunk.ID]int32{}
	for id := range packs {
		if st := g.stats[id]; st != nil {
			for _, e := range st.liveChunks {
				outside[e.ID]--
			}
		}
	}
	ids := sortedIDs(packs)
	for _, id := range ids {
		st := g.stats[id]
		if st == nil {
			continue
		}
		keep := false
		for _, e := range st.liveChunks {
			if g.holders[e.ID]+outside[e.ID] <= 0 {
				keep = true
				break
			}
		}
		if keep {
			delete(packs, id)
			g.rep.PacksSpared++
			for _, e := range st.liveChunks {
				outside[e.ID]++
			}
		}
	}
}

// deleteDue writes the tombstone naming packs, recipes and descs, deletes
// them and records the tombstone in the node index.
func (g *gcRun) deleteDue(ctx context.Context, packs, recipes map[chunk.ID]bool, descs map[string]bool) error {
	r := g.r
	tomb := &gcRecord{Created: g.now.UTC()}
	for _, id := range sortedIDs(packs) {
		tomb.Packs = append(tomb.Packs, id.String())
		tomb.packIDs = append(tomb.packIDs, id)
	}
	for _, id := range sortedIDs(recipes) {
		tomb.Recipes = append(tomb.Recipes, id.String())
	}
	tomb.Descriptors = slices.Sorted(maps.Keys(descs))
	key, err := r.writeGCRecord(ctx, gcDeletedDir, tomb)
	if err != nil {
		return err
	}
	g.rep.Tombstone = key
	if gcTestHook != nil {
		if err := gcTestHook("tombstone"); err != nil {
			return err
		}
	}
	// Descriptors, then recipes, then packs: what names something goes first.
	for _, d := range tomb.Descriptors {
		if err := r.store.Delete(ctx, descriptorKey(d)); err != nil {
			return err
		}
	}
	for _, id := range sortedIDs(recipes) {
		if err := r.store.Delete(ctx, recipeKey(id)); err != nil {
			return err
		}
	}
	for _, id := range tomb.packIDs {
		if err := r.store.Delete(ctx, packKey(id)); err != nil {
			return err
		}
	}
	if _, err := r.idx.IngestTombstone(key, tomb.packIDs); err != nil {
		return err
	}
	return nil
}

// condemn writes a plan naming what is older than T, not live and not
// already condemned; mostly dead packs have their live chunks copied first.
func (g *gcRun) condemn(ctx context.Context, pending []*gcRecord, deleted map[chunk.ID]bool) error {
	r := g.r
	g.rep.PlansPending = len(pending)
	planned := newGCSet()
	for _, p := range pending {
		planned.add(p)
	}
	plan := &gcRecord{Created: g.now.UTC()}
	want := g.condemnPacks(plan, planned, deleted)
	if err := g.condemnRecipes(ctx, plan, planned); err != nil {
		return err
	}
	g.condemnDescriptors(plan, planned)
	if g.opts.DryRun || len(plan.Packs)+len(plan.Recipes)+len(plan.Descriptors) == 0 {
		return nil
	}
	if len(want) > 0 {
		records, n, err := r.copyChunks(ctx, want)
		if err != nil {
			return err
		}
		g.rep.PacksWritten += len(records)
		g.rep.BytesWritten += n
	}
	key, err := r.writeGCRecord(ctx, gcPlanDir, plan)
	if err != nil {
		return err
	}
	g.rep.Plan = key
	return nil
}

// condemnPacks adds to plan the packs older than T that neither a plan
// (planned) nor this run (deleted) already condemned and that hold no live
// chunk or, mostly dead, fewer live bytes than RewriteBelow. It returns the
// live chunks to copy out of them first (source pack -> entries): those no
// other pack that stays holds.
func (g *gcRun) condemnPacks(plan *gcRecord, planned gcSet, deleted map[chunk.ID]bool) map[chunk.ID][]pack.Entry {
	// alive[c]: packs holding live chunk c that no plan condemns.
	alive := map[chunk.ID]int32{}
	for id, st := range g.stats {
		if planned.packs[id] || deleted[id] {
			continue
		}
		for _, e := range st.liveChunks {
			alive[e.ID]++
		}
	}
	want := map[chunk.ID][]pack.Entry{}
	for _, id := range sortedIDs(mapsKeysID(g.packInfo)) {
		oi := g.packInfo[id]
		if planned.packs[id] || deleted[id] || g.now.Sub(oi.ModTime) < g.grace {
			continue
		}
		st := g.stats[id]
		switch {
		case st == nil || st.live == 0:
		case g.below > 0 && float64(st.live) < g.below*float64(st.total):
			g.rep.PacksRewritten++
			for _, e := range st.liveChunks {
				if alive[e.ID]--; alive[e.ID] == 0 {
					want[id] = append(want[id], pack.Entry{ID: e.ID, BlockOffset: e.BlockOffset, BlockLength: e.BlockLength, Offset: e.Offset, Length: e.Length})
					alive[e.ID]++ // the copy
				}
			}
		default:
			continue
		}
		plan.Packs = append(plan.Packs, id.String())
		g.rep.PacksCondemned++
		g.rep.BytesCondemned += oi.Size
	}
	return want
}

// condemnRecipes adds to plan the recipes older than T that are not live,
// not already condemned and not deleted by this run.
func (g *gcRun) condemnRecipes(ctx context.Context, plan *gcRecord, planned gcSet) error {
	recipes, err := g.r.listKeys(ctx, recipeDir)
	if err != nil {
		return err
	}
	for _, oi := range recipes {
		id, err := chunk.ParseID(oi.Key[strings.LastIndexByte(oi.Key, '/')+1:])
		if err != nil || recipeKey(id) != oi.Key {
			continue
		}
		if g.liveRecipes[id] || planned.recipes[id] || g.deletedRecipes[id] || g.now.Sub(oi.ModTime) < g.grace {
			continue
		}
		plan.Recipes = append(plan.Recipes, id.String())
		g.rep.RecipesCondemned++
	}
	return nil
}

// condemnDescriptors adds to plan the blob descriptors older than T that
// are not live and not already condemned.
func (g *gcRun) condemnDescriptors(plan *gcRecord, planned gcSet) {
	for _, d := range slices.Sorted(maps.Keys(g.descInfo)) {
		if g.liveDescs[d] || planned.descs[d] || g.now.Sub(g.descInfo[d].ModTime) < g.grace {
			continue
		}
		plan.Descriptors = append(plan.Descriptors, d)
		g.rep.DescriptorsCondemned++
	}
}

// gcTestHook, when set (tests), is called at named points of a gc run; an
// error stops the run there, as a crash would.
var gcTestHook func(point string) error

func sortedIDs(m map[chunk.ID]bool) []chunk.ID {
	ids := make([]chunk.ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b chunk.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ids
}

func mapsKeysID(m map[chunk.ID]objectstore.ObjectInfo) map[chunk.ID]bool {
	out := make(map[chunk.ID]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func pathMatch(pattern, name string) (bool, error) { return path.Match(pattern, name) }
