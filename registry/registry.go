package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/index"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/pack"
)

// Store key layout; see the package doc.
const (
	configKey       = "config.json"
	catalogKey      = "catalog.json"
	legacyBlobDir   = "blobs/sha256/"
	descriptorDir   = "blobs/chunked/"
	packDir         = "blobs/packs/"
	indexObjectDir  = "blobs/index/"
	recipeDir       = "blobs/recipes/"
	manifestDir     = "manifests/"
	storeVersion    = 1
	maxConfigBytes  = 1 << 16
	maxIndexObject  = 512 << 20
	maxRecipeObject = 1 << 30
	maxDescriptor   = 1 << 16
	maxManifest     = 16 << 20
	gcPlanDir       = "gc/plans/"
	gcDeletedDir    = "gc/deleted/"
	maxGCRecord     = 256 << 20
)

// Sentinel errors; callers test them with errors.Is.
var (
	// ErrBlobNotFound: no blob with that digest in the store.
	ErrBlobNotFound = errors.New("blob not found")
	// ErrManifestNotFound: no manifest for that name and tag.
	ErrManifestNotFound = errors.New("manifest not found")
	// ErrDigestMismatch: content does not hash to the digest it was given or recorded with.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: content is not as long as it was said or recorded to be.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidDigest: a digest that is not 64 lowercase hex digits.
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrCorruptStore: an object in the store fails its checks.
	ErrCorruptStore = errors.New("corrupt store object")
)

// Option configures a Registry.
type Option func(*options) error

type options struct {
	cacheDir    string
	indexPath   string
	concurrency int
	packSize    int64
	gcGrace     time.Duration
	polynomial  chunker.Pol
}

// WithCacheDir sets the folder of the node-local index (default
// $EPOCH_CACHE_DIR, else $XDG_CACHE_HOME/epoch-dedup, else
// ~/.cache/epoch-dedup). The index is a cache: deleting it loses nothing.
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("cache dir is empty")
		}
		o.cacheDir = dir
		return nil
	}
}

// WithIndexPath sets the index file itself, overriding WithCacheDir.
func WithIndexPath(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("index path is empty")
		}
		o.indexPath = path
		return nil
	}
}

// WithConcurrency sets how many object-store requests run at once for one
// push or pull (default 8).
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 256 {
			return fmt.Errorf("concurrency %d out of range [1,256]", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithPackSize sets the target size of a pack (default 16 MiB).
func WithPackSize(n int64) Option {
	return func(o *options) error {
		if n < 1<<20 || n > 1<<30 {
			return fmt.Errorf("pack size %d out of range [1 MiB, 1 GiB]", n)
		}
		o.packSize = n
		return nil
	}
}

// WithPolynomial sets the chunker polynomial written into the store config
// when this registry creates the store; an existing store keeps its own.
// The default is a random polynomial, as restic picks one per repository.
// A fixed one makes content-defined chunk boundaries, and so the bytes a
// push sends, the same from run to run: the benchmarks use it.
func WithPolynomial(pol chunker.Pol) Option {
	return func(o *options) error {
		if !pol.Irreducible() || pol.Deg() != 53 {
			return fmt.Errorf("chunker polynomial %#x: not an irreducible polynomial of degree 53", uint64(pol))
		}
		o.polynomial = pol
		return nil
	}
}

// Registry is the Epoch snapshot registry over a chunked, deduplicated
// store. It is safe for concurrent use.
type Registry struct {
	store    *objectstore.Client
	opts     options
	optErr   error
	initMu   sync.Mutex
	ready    bool
	idx      *index.DB
	pol      chunker.Pol
	enc      *zstd.Encoder // shared by every pack writer: EncodeAll is concurrency-safe
	syncMu   sync.Mutex
	gcMu     sync.Mutex
	gcRecs   map[string]*gcRecord // plans and tombstones read, by key (immutable objects)
	bg       sync.WaitGroup       // background removals of replaced files
	records  backlog              // chunk records of pulled files, run off the pulls' critical path (fetch)
	spoolDir string               // where pushes spool packs: the index's folder
	// directSpools: the store takes pack spools as they are, so their
	// bytes skip the page cache.
	directSpools bool
	// spoolExtents is spoolRecipeExtents, lowered by tests.
	spoolExtents int
	// mergeThreshold is the node index's MergeThreshold (zero: 1<<16),
	// lowered by tests.
	mergeThreshold int
}

// storeConfig is the store's config object: what every writer must agree on.
type storeConfig struct {
	Version    int       `json:"version"`
	Polynomial string    `json:"chunkerPolynomial"`
	CreatedAt  time.Time `json:"createdAt"`
}

// New creates a registry backed by the given object store client. Options
// are optional; an invalid one makes every call fail with its error.
func New(client *objectstore.Client, opts ...Option) *Registry {
	r := &Registry{store: client, gcRecs: map[string]*gcRecord{}, spoolExtents: spoolRecipeExtents}
	r.opts = options{concurrency: 8, packSize: 16 << 20, gcGrace: DefaultGCGrace}
	for _, opt := range opts {
		if err := opt(&r.opts); err != nil && r.optErr == nil {
			r.optErr = fmt.Errorf("registry option: %w", err)
		}
	}
	return r
}

// NewFromEnv creates a registry using object store credentials from the
// environment (EPOCH_S3_* and the env file; see objectstore.ConfigFromEnv).
func NewFromEnv(opts ...Option) (*Registry, error) {
	cfg, err := objectstore.ConfigFromEnv("EPOCH_S3")
	if err != nil {
		return nil, fmt.Errorf("registry from env: %w", err)
	}
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("registry from env: %w", err)
	}
	return New(client, opts...), nil
}

// NewFromConfigMap creates a registry using object store credentials from a
// Kubernetes ConfigMap.
func NewFromConfigMap(namespace, configmap string, opts ...Option) (*Registry, error) {
	cfg, err := objectstore.ConfigFromConfigMap(namespace, configmap, "EPOCH_S3")
	if err != nil {
		return nil, fmt.Errorf("registry from configmap %s/%s: %w", namespace, configmap, err)
	}
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("registry from configmap %s/%s: %w", namespace, configmap, err)
	}
	return New(client, opts...), nil
}

// Store returns the object store client the registry writes to.
func (r *Registry) Store() *objectstore.Client { return r.store }

// Close releases the node-local index. The registry must not be used after.
func (r *Registry) Close() error {
	r.bg.Wait()
	r.records.Wait()
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.idx == nil {
		return nil
	}
	err := r.idx.Close()
	_ = r.enc.Close()
	r.idx, r.enc = nil, nil
	r.ready = false
	return err
}

// init loads (or creates) the store config and opens the node index, once.
func (r *Registry) init(ctx context.Context) error {
	if r.optErr != nil {
		return r.optErr
	}
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.ready {
		return nil
	}
	pol, err := r.loadConfig(ctx)
	if err != nil {
		return err
	}
	path := r.opts.indexPath
	if path == "" {
		dir := r.opts.cacheDir
		if dir == "" {
			if dir, err = defaultCacheDir(); err != nil {
				return err
			}
		}
		sum := sha256.Sum256([]byte(r.store.String()))
		path = filepath.Join(dir, "index-"+hex.EncodeToString(sum[:8])+".db")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	enc, err := pack.NewEncoder(pack.DefaultLevel)
	if err != nil {
		return err
	}
	// A smaller merge threshold than the default bounds the memory of a
	// multi-GiB push at the cost of more, smaller merges.
	threshold := r.mergeThreshold
	if threshold == 0 {
		threshold = 1 << 16
	}
	idx, err := index.Open(path, &index.Options{MergeThreshold: threshold, BackgroundMerge: true})
	if err != nil {
		_ = enc.Close()
		return fmt.Errorf("open index %s: %w", path, err)
	}
	r.idx, r.pol, r.enc, r.ready = idx, pol, enc, true
	r.spoolDir = filepath.Dir(path)
	r.directSpools = r.store.TakesSpools(r.spoolDir)
	removeStaleSpools(r.spoolDir, time.Now().Add(-staleSpoolAge))
	return nil
}

// staleSpoolAge is how old a spool file in the cache folder must be to be
// taken for the leftover of a killed push. Pack spools have no name; a
// stream's spool and a big recipe's have one while their push runs, and
// registries of other stores share the folder, so only old ones go.
const staleSpoolAge = 24 * time.Hour

// removeStaleSpools removes the named spool files in dir last written
// before the given time. Failures only leave them for the next time.
func removeStaleSpools(dir string, before time.Time) {
	for _, pattern := range []string{"spool-*", "recipe-*.spool"} {
		names, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, name := range names {
			if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(before) {
				_ = os.Remove(name)
			}
		}
	}
}

func defaultCacheDir() (string, error) {
	if d := os.Getenv("EPOCH_CACHE_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "epoch-dedup"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir (set EPOCH_CACHE_DIR): %w", err)
	}
	return filepath.Join(home, ".cache", "epoch-dedup"), nil
}

// loadConfig reads the store config, creating it (create-only, so two
// first pushers agree on one polynomial) when the store is new.
func (r *Registry) loadConfig(ctx context.Context) (chunker.Pol, error) {
	for range 3 {
		data, _, err := r.store.GetBytes(ctx, configKey, maxConfigBytes)
		if err == nil {
			var cfg storeConfig
			if err := json.Unmarshal(data, &cfg); err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrCorruptStore, configKey, err)
			}
			if cfg.Version != storeVersion {
				return 0, fmt.Errorf("%w: %s: store version %d, this build reads %d", ErrCorruptStore, configKey, cfg.Version, storeVersion)
			}
			pol, err := parsePol(cfg.Polynomial)
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrCorruptStore, configKey, err)
			}
			return pol, nil
		}
		if !errors.Is(err, objectstore.ErrNotFound) {
			return 0, fmt.Errorf("read store config: %w", err)
		}
		pol := r.opts.polynomial
		if pol == 0 {
			if pol, err = chunker.RandomPolynomial(); err != nil {
				return 0, fmt.Errorf("create store config: %w", err)
			}
		}
		cfg, err := json.MarshalIndent(storeConfig{Version: storeVersion, Polynomial: fmt.Sprintf("%#x", uint64(pol)), CreatedAt: time.Now().UTC()}, "", "  ")
		if err != nil {
			return 0, err
		}
		_, err = r.store.PutBytes(ctx, configKey, cfg, objectstore.PutOptions{IfNoneMatch: true})
		if err == nil {
			return pol, nil
		}
		if !errors.Is(err, objectstore.ErrPreconditionFailed) {
			return 0, fmt.Errorf("create store config: %w", err)
		}
		// Another writer created it first: read theirs.
	}
	return 0, fmt.Errorf("read store config: gave up after concurrent creation")
}

func parsePol(s string) (chunker.Pol, error) {
	var v uint64
	if _, err := fmt.Sscanf(s, "0x%x", &v); err != nil {
		return 0, fmt.Errorf("chunker polynomial %q: %w", s, err)
	}
	pol := chunker.Pol(v)
	if !pol.Irreducible() {
		return 0, fmt.Errorf("chunker polynomial %q is not irreducible", s)
	}
	return pol, nil
}

// syncIndex ingests the gc tombstones and the index objects other pushers
// wrote since the last sync. It lists them only, never the packs.
func (r *Registry) syncIndex(ctx context.Context) error {
	_, err := r.syncStore(ctx)
	return err
}

// syncStore is syncIndex returning the tombstone keys it listed.
// Tombstones go first: an index object that still names a deleted pack
// must find it already refused (see GC.md).
func (r *Registry) syncStore(ctx context.Context) (map[string]time.Time, error) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	tombs, err := r.listKeys(ctx, gcDeletedDir)
	if err != nil {
		return nil, fmt.Errorf("sync index: %w", err)
	}
	seen := make(map[string]time.Time, len(tombs))
	for _, oi := range tombs {
		seen[oi.Key] = oi.ModTime
		done, err := r.idx.Ingested(oi.Key)
		if err != nil {
			return nil, fmt.Errorf("sync index: %w", err)
		}
		if done {
			continue
		}
		rec, err := r.readGCRecord(ctx, oi)
		if err != nil {
			return nil, fmt.Errorf("sync index: %w", err)
		}
		if rec == nil {
			continue
		}
		if _, err := r.idx.IngestTombstone(oi.Key, rec.packIDs); err != nil {
			return nil, fmt.Errorf("sync index %s: %w", oi.Key, err)
		}
	}
	var names []string
	err = r.store.List(ctx, indexObjectDir, func(oi objectstore.ObjectInfo) error {
		names = append(names, oi.Key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync index: %w", err)
	}
	var todo []string
	for _, name := range names {
		done, err := r.idx.Ingested(name)
		if err != nil {
			return nil, fmt.Errorf("sync index: %w", err)
		}
		if !done {
			todo = append(todo, name)
		}
	}
	// A node far behind (a new node's first pull) merges what it stages
	// into its chunk tree once, at the end (see index.DB.StageAll).
	for len(todo) > 0 {
		batch := todo[:min(len(todo), syncBatch)]
		todo = todo[len(batch):]
		objs, err := r.fetchIndexObjects(ctx, batch)
		if err != nil {
			return nil, err
		}
		if err := r.idx.StageAll(objs); err != nil {
			return nil, fmt.Errorf("sync index: %w", err)
		}
	}
	if r.idx.Staged() {
		if err := r.idx.Merge(); err != nil {
			return nil, fmt.Errorf("sync index: %w", err)
		}
	}
	return seen, nil
}

// syncBatch is how many index objects a sync fetches before ingesting them
// in one transaction: a node catching up on a long-lived store pays one
// commit per batch, not per object. A full pack of 4 KiB pages indexes 4096
// chunks, so a batch is about one index merge's worth (MergeThreshold) of
// entries held in memory.
const syncBatch = 16

// fetchIndexObjects reads and decodes the index objects names, up to the
// registry's concurrency at once. Objects removed since the listing (gc
// compacted them away) are left out.
func (r *Registry) fetchIndexObjects(ctx context.Context, names []string) ([]index.IndexObject, error) {
	objs := make([]index.IndexObject, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, r.opts.concurrency)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, _, err := r.store.GetBytes(ctx, name, maxIndexObject)
			if errors.Is(err, objectstore.ErrNotFound) {
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("sync index %s: %w", name, err)
				return
			}
			packs, err := index.DecodeIndexObject(data)
			if err != nil {
				errs[i] = fmt.Errorf("sync index %s: %w: %w", name, ErrCorruptStore, err)
				return
			}
			objs[i] = index.IndexObject{Name: name, Packs: packs}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return slices.DeleteFunc(objs, func(o index.IndexObject) bool { return o.Name == "" }), nil
}

func packKey(id chunk.ID) string {
	s := id.String()
	return packDir + s[:2] + "/" + s
}

func recipeKey(id chunk.ID) string {
	s := id.String()
	return recipeDir + s[:2] + "/" + s
}

func descriptorKey(digest string) string { return descriptorDir + digest + ".json" }

func legacyBlobKey(digest string) string { return legacyBlobDir + digest }

// validateDigest checks a SHA-256 hex digest; an optional "sha256:" prefix
// is accepted and removed.
func validateDigest(d string) (string, error) {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) != 64 {
		return "", fmt.Errorf("%w: %q is not 64 hex digits", ErrInvalidDigest, d)
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %q is not lowercase hex", ErrInvalidDigest, d)
		}
	}
	return d, nil
}
