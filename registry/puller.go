package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// DefaultPreWarmConcurrency bounds how many snapshots PreWarm pulls at once.
const DefaultPreWarmConcurrency = 2

// Puller keeps Cocoon snapshots on this node in step with the registry, for
// vk-cocoon. It is safe for concurrent use: calls for the same snapshot
// share one pull, and a finished pull is remembered in the snapshot's
// Cocoon record, so later calls return after one small manifest read.
type Puller struct {
	reg   *Registry
	paths *cocoon.Paths

	mu       sync.Mutex
	inflight map[string]*flight
	warm     chan struct{}
}

type flight struct {
	done chan struct{}
	err  error
}

// NewPuller creates a Puller that reads object store settings from the
// Kubernetes ConfigMap namespace/configmap: through the Kubernetes API when
// running in a pod (service-account token), else kubectl, else the
// environment (EPOCH_S3_*).
func NewPuller(cocoonRootDir, namespace, configmap string) (*Puller, error) {
	reg, err := NewFromConfigMap(namespace, configmap)
	if err != nil {
		return nil, err
	}
	return newPuller(reg, cocoonRootDir), nil
}

// NewPullerFromConfig creates a Puller with explicit object store settings.
func NewPullerFromConfig(cfg *objectstore.Config, cocoonRootDir string) (*Puller, error) {
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("new puller: %w", err)
	}
	return newPuller(New(client), cocoonRootDir), nil
}

// NewPullerFromRegistry creates a Puller over an existing Registry.
func NewPullerFromRegistry(reg *Registry, cocoonRootDir string) *Puller {
	return newPuller(reg, cocoonRootDir)
}

func newPuller(reg *Registry, root string) *Puller {
	if root == "" {
		root = cocoon.DefaultRootDir
	}
	return &Puller{
		reg:      reg,
		paths:    cocoon.NewPaths(root),
		inflight: map[string]*flight{},
		warm:     make(chan struct{}, DefaultPreWarmConcurrency),
	}
}

// EnsureSnapshot makes sure a snapshot of that name is on this node. A
// snapshot already present is used as it is, without asking the registry
// (the fast path before every clone); a missing one is pulled from its
// "latest" tag.
func (p *Puller) EnsureSnapshot(ctx context.Context, name string) error {
	ok, err := cocoon.SnapshotExists(p.paths, name)
	if err != nil {
		return fmt.Errorf("ensure %s: %w", name, err)
	}
	if ok {
		return nil
	}
	return p.ensure(ctx, name, defaultTag, false)
}

// EnsureSnapshotTag makes sure the local snapshot of that name is the tag's
// current revision: it compares the manifest digest recorded when the
// snapshot was pulled with the tag's, and pulls the newer revision when they
// differ, cheaply, from the chunks already on this node.
func (p *Puller) EnsureSnapshotTag(ctx context.Context, name, tag string) error {
	if tag == "" {
		tag = defaultTag
	}
	return p.ensure(ctx, name, tag, true)
}

func (p *Puller) ensure(ctx context.Context, name, tag string, checkDigest bool) error {
	if err := checkRef(name, tag); err != nil {
		return fmt.Errorf("ensure %s:%s: %w", name, tag, err)
	}
	key := name + ":" + tag
	p.mu.Lock()
	if f, ok := p.inflight[key]; ok {
		p.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	p.inflight[key] = f
	p.mu.Unlock()

	// The shared pull must not die with the first caller's context: others
	// wait on it too. It stops when its own work is done.
	f.err = p.pullIfStale(context.WithoutCancel(ctx), name, tag, checkDigest)
	p.mu.Lock()
	delete(p.inflight, key)
	p.mu.Unlock()
	close(f.done)
	return f.err
}

func (p *Puller) pullIfStale(ctx context.Context, name, tag string, checkDigest bool) error {
	local, err := p.localDigest(ctx, name)
	if err != nil && !errors.Is(err, errNoLocal) {
		return fmt.Errorf("ensure %s:%s: %w", name, tag, err)
	}
	if err == nil && !checkDigest {
		return nil
	}
	if err == nil {
		data, err := p.reg.ManifestJSON(ctx, name, tag)
		if err != nil {
			return fmt.Errorf("ensure %s:%s: %w", name, tag, err)
		}
		if manifest.Digest(data) == local {
			return nil
		}
	}
	if _, _, err := p.reg.PullSnapshot(ctx, p.paths, name, tag, PullOptions{}); err != nil {
		return fmt.Errorf("ensure %s:%s: %w", name, tag, err)
	}
	return nil
}

// localDigest returns the manifest digest the local snapshot name was
// pulled from ("" when it was made here), or errNoLocal.
func (p *Puller) localDigest(ctx context.Context, name string) (string, error) {
	db, err := cocoon.LoadSnapshotDB(ctx, p.paths)
	if err != nil {
		return "", err
	}
	id, err := cocoon.ResolveSnapshotID(db, name)
	if errors.Is(err, cocoon.ErrSnapshotNotFound) {
		return "", errNoLocal
	}
	if err != nil {
		return "", err
	}
	rec := db.Snapshots[id]
	if rec == nil {
		return "", errNoLocal
	}
	return pulledDigest(rec), nil
}

// PreWarm pulls the named snapshots in the background, at most
// DefaultPreWarmConcurrency at a time, and returns at once. Errors are
// dropped: a later EnsureSnapshot retries and reports them.
func (p *Puller) PreWarm(ctx context.Context, snapshots []string) {
	for _, name := range slices.Clone(snapshots) {
		go func() {
			select {
			case p.warm <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-p.warm }()
			_ = p.EnsureSnapshot(ctx, name)
		}()
	}
}

// ListRemote returns all repositories in the remote registry, sorted.
func (p *Puller) ListRemote(ctx context.Context) ([]string, error) {
	c, err := p.reg.GetCatalog(ctx)
	if err != nil {
		return nil, fmt.Errorf("list remote: %w", err)
	}
	names := make([]string, 0, len(c.Repositories))
	for n := range c.Repositories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// Registry returns the registry the puller pulls from.
func (p *Puller) Registry() *Registry { return p.reg }
