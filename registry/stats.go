package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// LayerInfo describes how one layer (file) of a manifest is stored.
type LayerInfo struct {
	Filename  string `json:"filename"`
	MediaType string `json:"media_type"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	// Legacy is true for a file stored only as an Epoch v0.1.x whole blob:
	// it has no recipe and none of the chunk figures below.
	Legacy  bool   `json:"legacy,omitempty"`
	Chunker string `json:"chunker,omitempty"`
	Recipe  string `json:"recipe,omitempty"`
	// RecipeKind is "full" or "patch"; ChainDepth counts the patches down
	// to the full recipe.
	RecipeKind  string `json:"recipe_kind,omitempty"`
	ChainDepth  int    `json:"chain_depth"`
	RecipeBytes int64  `json:"recipe_bytes"` // stored size of this recipe object
	Extents     int    `json:"extents"`
	// Chunks counts data extents; UniqueChunks the distinct chunk IDs among
	// them (a page repeated in the file is stored once).
	Chunks       int64 `json:"chunks"`
	UniqueChunks int64 `json:"unique_chunks"`
	ZeroBytes    int64 `json:"zero_bytes"`   // holes and all-zero runs: never stored
	DataBytes    int64 `json:"data_bytes"`   // bytes in data extents
	UniqueBytes  int64 `json:"unique_bytes"` // bytes of the distinct chunks

	ids map[chunk.ID]uint32
}

// ManifestInfo sums the LayerInfo of a manifest's layers.
type ManifestInfo struct {
	Layers    []LayerInfo `json:"layers"`
	RawBytes  int64       `json:"raw_bytes"`
	ZeroBytes int64       `json:"zero_bytes"`
	DataBytes int64       `json:"data_bytes"`
	Chunks    int64       `json:"chunks"`
	// UniqueChunks and UniqueBytes count distinct chunks across all layers:
	// what the snapshot needs from the store, before compression.
	UniqueChunks int64 `json:"unique_chunks"`
	UniqueBytes  int64 `json:"unique_bytes"`
	// DedupRatio is RawBytes / UniqueBytes: how much smaller the distinct
	// non-zero content is than the files.
	DedupRatio float64 `json:"dedup_ratio"`
}

// StoreStats sums up a store.
type StoreStats struct {
	Store        string      `json:"store"`
	Repositories []RepoStats `json:"repositories"`
	Tags         int         `json:"tags"`
	// RawBytes sums the total size of every tagged manifest: what a
	// whole-file store would hold.
	RawBytes int64 `json:"raw_bytes"`
	// StoredBytes is what the content takes in the store: packs, recipes,
	// index objects, blob descriptors, manifests and legacy whole blobs.
	StoredBytes     int64   `json:"stored_bytes"`
	PackBytes       int64   `json:"pack_bytes"`
	RecipeBytes     int64   `json:"recipe_bytes"`
	IndexBytes      int64   `json:"index_bytes"`
	MetadataBytes   int64   `json:"metadata_bytes"` // descriptors, manifests, catalog, config
	LegacyBytes     int64   `json:"legacy_bytes"`
	Packs           int64   `json:"packs"`
	Recipes         int64   `json:"recipes"`
	IndexObjects    int64   `json:"index_objects"`
	Chunks          int64   `json:"chunks"`
	DedupRatio      float64 `json:"dedup_ratio"` // RawBytes / StoredBytes
	ManifestsFailed int     `json:"manifests_failed,omitempty"`
}

// RepoStats sums up one repository.
type RepoStats struct {
	Name     string `json:"name"`
	Tags     int    `json:"tags"`
	RawBytes int64  `json:"raw_bytes"`
}

// LayerStats reads a layer's recipe (verified, patch chain resolved) and
// returns how the file is stored: chunks, zero bytes, chunker, recipe.
func (r *Registry) LayerStats(ctx context.Context, layer manifest.Layer) (LayerInfo, error) {
	info := LayerInfo{
		Filename: layer.Filename, MediaType: layer.MediaType, Digest: layer.Digest,
		Size: layer.Size, Chunker: layer.Chunker, Recipe: layer.Recipe,
	}
	if layer.Recipe == "" {
		info.Legacy = true
		return info, nil
	}
	base, err := r.layerRecipe(ctx, layer)
	if err != nil {
		return info, err
	}
	id := base.id
	info.ChainDepth = base.depth
	info.RecipeKind = "full"
	if base.depth > 0 {
		info.RecipeKind = "patch"
	}
	if oi, err := r.store.Stat(ctx, recipeKey(id)); err == nil {
		info.RecipeBytes = oi.Size
	}
	info.Extents = len(base.recipe.Extents)
	info.ids = make(map[chunk.ID]uint32)
	for _, e := range base.recipe.Extents {
		if e.Zero {
			info.ZeroBytes += int64(e.Length)
			continue
		}
		info.Chunks++
		info.DataBytes += int64(e.Length)
		if _, ok := info.ids[e.ID]; !ok {
			info.ids[e.ID] = uint32(e.Length)
			info.UniqueBytes += int64(e.Length)
		}
	}
	info.UniqueChunks = int64(len(info.ids))
	return info, nil
}

// ManifestStats returns LayerStats for every layer of m and the totals,
// counting a chunk shared by several files once.
func (r *Registry) ManifestStats(ctx context.Context, m *manifest.Manifest) (*ManifestInfo, error) {
	out := &ManifestInfo{Layers: make([]LayerInfo, 0, len(m.Layers))}
	all := map[chunk.ID]uint32{}
	for _, l := range m.Layers {
		info, err := r.LayerStats(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("inspect %s:%s: %w", m.Name, m.Tag, err)
		}
		out.RawBytes += info.Size
		out.ZeroBytes += info.ZeroBytes
		out.DataBytes += info.DataBytes
		out.Chunks += info.Chunks
		if info.Legacy {
			out.UniqueBytes += info.Size
		}
		for id, n := range info.ids {
			if _, ok := all[id]; !ok {
				all[id] = n
				out.UniqueBytes += int64(n)
			}
		}
		info.ids = nil
		out.Layers = append(out.Layers, info)
	}
	out.UniqueChunks = int64(len(all))
	if out.UniqueBytes > 0 {
		out.DedupRatio = float64(out.RawBytes) / float64(out.UniqueBytes)
	}
	return out, nil
}

// Stats sums up the store: the raw size of every tagged manifest against
// the bytes the store holds, per repository. It lists the whole store
// (every object once) and reads every tag manifest.
func (r *Registry) Stats(ctx context.Context) (*StoreStats, error) {
	if err := r.init(ctx); err != nil {
		return nil, err
	}
	if err := r.syncIndex(ctx); err != nil {
		return nil, err
	}
	st := &StoreStats{Store: r.store.String(), Repositories: []RepoStats{}}
	var tagKeys []manifestRef
	err := r.store.List(ctx, "", func(oi objectstore.ObjectInfo) error {
		switch k := oi.Key; {
		case strings.HasPrefix(k, packDir):
			st.Packs++
			st.PackBytes += oi.Size
		case strings.HasPrefix(k, recipeDir):
			st.Recipes++
			st.RecipeBytes += oi.Size
		case strings.HasPrefix(k, indexObjectDir):
			st.IndexObjects++
			st.IndexBytes += oi.Size
		case strings.HasPrefix(k, legacyBlobDir):
			st.LegacyBytes += oi.Size
		case strings.HasPrefix(k, descriptorDir), strings.HasPrefix(k, manifestDir), k == catalogKey, k == configKey:
			st.MetadataBytes += oi.Size
			if ref, ok := parseManifestKey(k); ok && ref.tag != "" {
				tagKeys = append(tagKeys, ref)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store stats: %w", err)
	}
	repos := map[string]*RepoStats{}
	for _, ref := range tagKeys {
		m, err := r.PullManifest(ctx, ref.name, ref.tag)
		if err != nil {
			if errors.Is(err, ErrManifestNotFound) || errors.Is(err, manifest.ErrInvalidManifest) {
				st.ManifestsFailed++ // removed meanwhile, or broken: check reports it
				continue
			}
			return nil, fmt.Errorf("store stats: %w", err)
		}
		rs := repos[ref.name]
		if rs == nil {
			rs = &RepoStats{Name: ref.name}
			repos[ref.name] = rs
		}
		rs.Tags++
		rs.RawBytes += m.TotalSize
		st.Tags++
		st.RawBytes += m.TotalSize
	}
	for _, name := range slices.Sorted(maps.Keys(repos)) {
		st.Repositories = append(st.Repositories, *repos[name])
	}
	st.StoredBytes = st.PackBytes + st.RecipeBytes + st.IndexBytes + st.MetadataBytes + st.LegacyBytes
	if st.StoredBytes > 0 {
		st.DedupRatio = float64(st.RawBytes) / float64(st.StoredBytes)
	}
	n, err := r.idx.ChunkCount()
	if err != nil {
		return nil, fmt.Errorf("store stats: count chunks: %w", err)
	}
	st.Chunks = int64(n)
	return st, nil
}
