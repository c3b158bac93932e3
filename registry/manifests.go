package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

const (
	maxCatalog       = 64 << 20
	catalogAttempts  = 64
	digestTagPrefix  = "sha256:"
	manifestDigests  = "_digests"
	manifestFileType = ".json"
)

func manifestTagKey(name, tag string) string {
	return manifestDir + name + "/" + tag + manifestFileType
}

func manifestDigestKey(name, digest string) string {
	return manifestDir + name + "/" + manifestDigests + "/sha256-" + digest + manifestFileType
}

// checkRef validates a repository name and a tag (or "sha256:<hex>").
func checkRef(name, tag string) error {
	if err := manifest.ValidateName(name); err != nil {
		return err
	}
	if d, ok := strings.CutPrefix(tag, digestTagPrefix); ok {
		_, err := validateDigest(d)
		return err
	}
	return manifest.ValidateTag(tag)
}

func manifestKey(name, tag string) string {
	if d, ok := strings.CutPrefix(tag, digestTagPrefix); ok {
		return manifestDigestKey(name, d)
	}
	return manifestTagKey(name, tag)
}

// ManifestJSON returns the raw JSON bytes of a manifest without parsing. tag
// may also be a manifest digest, "sha256:<hex>".
func (r *Registry) ManifestJSON(ctx context.Context, name, tag string) ([]byte, error) {
	if err := checkRef(name, tag); err != nil {
		return nil, fmt.Errorf("get manifest %s:%s: %w", name, tag, err)
	}
	data, _, err := r.store.GetBytes(ctx, manifestKey(name, tag), maxManifest)
	if errors.Is(err, objectstore.ErrNotFound) {
		return nil, fmt.Errorf("get manifest %s:%s: %w", name, tag, ErrManifestNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get manifest %s:%s: %w", name, tag, err)
	}
	return data, nil
}

// PullManifest downloads and parses a manifest.
func (r *Registry) PullManifest(ctx context.Context, name, tag string) (*manifest.Manifest, error) {
	data, err := r.ManifestJSON(ctx, name, tag)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s:%s: %w", name, tag, err)
	}
	return m, nil
}

// PushManifest uploads a manifest for m.Name:m.Tag.
func (r *Registry) PushManifest(ctx context.Context, m *manifest.Manifest) error {
	data, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("push manifest %s:%s: %w", m.Name, m.Tag, err)
	}
	return r.PushManifestJSON(ctx, m.Name, m.Tag, data)
}

// PushManifestJSON uploads a manifest from raw JSON bytes and updates the
// catalog. The manifest is validated first, and every blob it names must
// already be in the store: a manifest never becomes visible before its
// content.
func (r *Registry) PushManifestJSON(ctx context.Context, name, tag string, data []byte) error {
	_, err := r.pushManifestJSON(ctx, name, tag, data)
	return err
}

func (r *Registry) pushManifestJSON(ctx context.Context, name, tag string, data []byte) (string, error) {
	return r.pushManifestGuarded(ctx, name, tag, data, nil, nil)
}

// pushManifestGuarded writes a manifest after the gc commit check (see
// commitCheck): g is what the push saw of gc when it started (nil for a
// manifest pushed on its own), known the recipes it holds in memory. The
// manifest objects are written under the check's deadline.
func (r *Registry) pushManifestGuarded(ctx context.Context, name, tag string, data []byte, g *gcGuard, known map[chunk.ID]*manifest.Recipe) (string, error) {
	if err := manifest.ValidateName(name); err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, err)
	}
	if err := manifest.ValidateTag(tag); err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, err)
	}
	if m.Name != name || m.Tag != tag {
		return "", fmt.Errorf("push manifest %s:%s: %w: document names %s:%s", name, tag, manifest.ErrInvalidManifest, m.Name, m.Tag)
	}
	recipes, digests := manifestDeps(m)
	deadline, err := r.commitCheck(ctx, g, recipes, digests, known)
	if err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, err)
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Every blob checked after the plans were listed: a descriptor gc
	// deleted before then is found missing here.
	for _, l := range append(slices.Clone(m.Layers), m.BaseImages...) {
		ok, err := r.BlobExists(wctx, l.Digest)
		if err != nil {
			return "", fmt.Errorf("push manifest %s:%s: layer %s: %w", name, tag, l.Filename, gcDeadline(wctx, err))
		}
		if !ok {
			return "", fmt.Errorf("push manifest %s:%s: layer %s: %w: %s", name, tag, l.Filename, ErrBlobNotFound, l.Digest)
		}
	}
	digest := manifest.Digest(data)
	if err := r.putImmutable(wctx, manifestDigestKey(name, digest), data); err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, gcDeadline(wctx, err))
	}
	if _, err := r.store.PutBytes(wctx, manifestTagKey(name, tag), data, objectstore.PutOptions{}); err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, gcDeadline(wctx, err))
	}
	err = r.updateCatalog(ctx, func(c *manifest.Catalog) bool {
		repo := c.Repositories[name]
		if repo == nil {
			repo = &manifest.Repository{Tags: map[string]string{}}
			c.Repositories[name] = repo
		}
		if repo.Tags == nil {
			repo.Tags = map[string]string{}
		}
		repo.Tags[tag] = digest
		repo.UpdatedAt = time.Now().UTC()
		return true
	})
	if err != nil {
		return "", fmt.Errorf("push manifest %s:%s: %w", name, tag, err)
	}
	return digest, nil
}

// DeleteManifest removes a tag. Content it referenced stays until garbage
// collection finds it unreferenced.
func (r *Registry) DeleteManifest(ctx context.Context, name, tag string) error {
	if err := checkRef(name, tag); err != nil {
		return fmt.Errorf("delete manifest %s:%s: %w", name, tag, err)
	}
	if strings.HasPrefix(tag, digestTagPrefix) {
		return fmt.Errorf("delete manifest %s:%s: delete by tag, not digest", name, tag)
	}
	if _, err := r.store.Stat(ctx, manifestTagKey(name, tag)); errors.Is(err, objectstore.ErrNotFound) {
		return fmt.Errorf("delete manifest %s:%s: %w", name, tag, ErrManifestNotFound)
	}
	if err := r.store.Delete(ctx, manifestTagKey(name, tag)); err != nil {
		return fmt.Errorf("delete manifest %s:%s: %w", name, tag, err)
	}
	err := r.updateCatalog(ctx, func(c *manifest.Catalog) bool {
		repo := c.Repositories[name]
		if repo == nil {
			return false
		}
		delete(repo.Tags, tag)
		repo.UpdatedAt = time.Now().UTC()
		if len(repo.Tags) == 0 {
			delete(c.Repositories, name)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("delete manifest %s:%s: %w", name, tag, err)
	}
	return nil
}

// ListTags returns the tags of one repository, sorted. The tags of nested
// repositories (name/child) are not included.
func (r *Registry) ListTags(ctx context.Context, name string) ([]string, error) {
	if err := manifest.ValidateName(name); err != nil {
		return nil, fmt.Errorf("list tags %s: %w", name, err)
	}
	prefix := manifestDir + name + "/"
	var tags []string
	err := r.store.List(ctx, prefix, func(oi objectstore.ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Key, prefix)
		if strings.Contains(rest, "/") || !strings.HasSuffix(rest, manifestFileType) {
			return nil
		}
		tags = append(tags, strings.TrimSuffix(rest, manifestFileType))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tags %s: %w", name, err)
	}
	slices.Sort(tags)
	return tags, nil
}

// GetCatalog returns the global catalog.
func (r *Registry) GetCatalog(ctx context.Context) (*manifest.Catalog, error) {
	c, _, err := r.readCatalog(ctx)
	if err != nil {
		return nil, fmt.Errorf("get catalog: %w", err)
	}
	return c, nil
}

func (r *Registry) readCatalog(ctx context.Context) (*manifest.Catalog, string, error) {
	data, oi, err := r.store.GetBytes(ctx, catalogKey, maxCatalog)
	if errors.Is(err, objectstore.ErrNotFound) {
		return &manifest.Catalog{Repositories: map[string]*manifest.Repository{}}, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	var c manifest.Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, "", fmt.Errorf("%w: %s: %w", ErrCorruptStore, catalogKey, err)
	}
	if c.Repositories == nil {
		c.Repositories = map[string]*manifest.Repository{}
	}
	return &c, oi.ETag, nil
}

// updateCatalog applies fn to the catalog by compare-and-swap on its ETag,
// retrying when another writer got there first, so concurrent pushers on
// any number of machines never lose each other's tags.
func (r *Registry) updateCatalog(ctx context.Context, fn func(*manifest.Catalog) bool) error {
	for attempt := range catalogAttempts {
		c, etag, err := r.readCatalog(ctx)
		if err != nil {
			return fmt.Errorf("update catalog: %w", err)
		}
		if !fn(c) {
			return nil
		}
		c.UpdatedAt = time.Now().UTC()
		data, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return fmt.Errorf("update catalog: %w", err)
		}
		opts := objectstore.PutOptions{IfMatch: etag, IfNoneMatch: etag == ""}
		_, err = r.store.PutBytes(ctx, catalogKey, data, opts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, objectstore.ErrPreconditionFailed) {
			return fmt.Errorf("update catalog: %w", err)
		}
		// Lost the race: back off with jitter so the writers spread out.
		wait := time.Duration(1+rand.IntN(10*(attempt+1))) * time.Millisecond
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("update catalog: %d concurrent updates in a row won; giving up", catalogAttempts)
}
