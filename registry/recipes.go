package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// baseRecipe is an earlier revision of a file, against which a new recipe
// may be stored as a patch.
type baseRecipe struct {
	id     chunk.ID
	depth  int
	recipe *manifest.Recipe
}

// storeRecipe writes recipe as a full object, or as a patch against base
// when that is much smaller, and returns its object ID.
// A file that did not change yields the base's own ID and sends nothing.
func (r *Registry) storeRecipe(ctx context.Context, recipe *manifest.Recipe, base *baseRecipe) (chunk.ID, error) {
	full, err := manifest.EncodeFull(recipe)
	if err != nil {
		return chunk.ID{}, fmt.Errorf("encode recipe: %w", err)
	}
	data := full
	if base != nil {
		if base.recipe.Equal(recipe) {
			return base.id, nil
		}
		ops := manifest.Diff(base.recipe, recipe)
		patch, err := manifest.EncodePatch(base.id, base.depth+1, recipe.Size, ops)
		if err != nil {
			return chunk.ID{}, fmt.Errorf("encode recipe patch: %w", err)
		}
		if manifest.Plan(base.depth, len(full), len(patch)) {
			data = patch
		}
	}
	id := chunk.Sum(data)
	if _, err := r.store.Stat(ctx, recipeKey(id)); err == nil {
		return id, nil
	}
	if err := r.putImmutable(ctx, recipeKey(id), data); err != nil {
		return chunk.ID{}, fmt.Errorf("write recipe %s: %w", id, err)
	}
	r.cacheRecipe(id, data)
	return id, nil
}

// loadRecipe reads and verifies a recipe object and resolves its patch
// chain down to a full recipe, through the node's recipe cache.
func (r *Registry) loadRecipe(ctx context.Context, id chunk.ID) (*baseRecipe, error) {
	ids, rec, err := r.resolveRecipe(ctx, id, r.recipeBytes)
	if err != nil {
		return nil, err
	}
	return &baseRecipe{id: id, depth: len(ids) - 1, recipe: rec}, nil
}

// layerRecipe loads the recipe a chunked layer names; errors name the layer.
func (r *Registry) layerRecipe(ctx context.Context, l manifest.Layer) (*baseRecipe, error) {
	id, err := chunk.ParseID(l.Recipe)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Filename, err)
	}
	base, err := r.loadRecipe(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Filename, err)
	}
	return base, nil
}

// resolveRecipe walks the patch chain of recipe id, reading each object
// with read (which verifies it), and applies the patches to the full
// recipe at its end. It returns the chain's IDs, from id down.
func (r *Registry) resolveRecipe(ctx context.Context, id chunk.ID, read func(context.Context, chunk.ID) ([]byte, error)) ([]chunk.ID, *manifest.Recipe, error) {
	var chain []*manifest.Object
	var ids []chunk.ID
	cur := id
	for {
		if len(chain) > manifest.MaxChainDepth {
			return nil, nil, fmt.Errorf("%w: recipe %s: patch chain longer than %d", ErrCorruptStore, id, manifest.MaxChainDepth)
		}
		data, err := read(ctx, cur)
		if err != nil {
			return nil, nil, err
		}
		obj, err := manifest.Decode(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: recipe %s: %w", ErrCorruptStore, cur, err)
		}
		chain = append(chain, obj)
		ids = append(ids, cur)
		if obj.Kind == manifest.KindFull {
			break
		}
		cur = obj.Base
	}
	rec := chain[len(chain)-1].Recipe
	for i := len(chain) - 2; i >= 0; i-- {
		next, err := manifest.Apply(rec, chain[i])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: recipe %s: %w", ErrCorruptStore, id, err)
		}
		rec = next
	}
	return ids, rec, nil
}

// recipeBytes returns the verified bytes of recipe object id, from the
// node's recipe cache when it has them. Recipes are immutable and named by
// their hash, so a cached copy that still hashes right is the object; the
// cache saves downloading a multi-megabyte full recipe again for every
// revision whose patch chain starts from it.
func (r *Registry) recipeBytes(ctx context.Context, id chunk.ID) ([]byte, error) {
	if err := r.init(ctx); err != nil {
		return nil, err
	}
	cached := r.recipeCachePath(id)
	if data, err := os.ReadFile(cached); err == nil && chunk.Sum(data) == id {
		return data, nil
	}
	data, err := r.storeRecipeBytes(ctx, id)
	if err != nil {
		return nil, err
	}
	r.cacheRecipe(id, data)
	return data, nil
}

// storeRecipeBytes reads recipe object id from the store itself, never
// the cache (gc must see what the store holds), and verifies its hash.
func (r *Registry) storeRecipeBytes(ctx context.Context, id chunk.ID) ([]byte, error) {
	data, _, err := r.store.GetBytes(ctx, recipeKey(id), maxRecipeObject)
	if err != nil {
		if errors.Is(err, objectstore.ErrNotFound) {
			return nil, fmt.Errorf("%w: recipe %s is missing", ErrCorruptStore, id)
		}
		return nil, fmt.Errorf("read recipe %s: %w", id, err)
	}
	if got := chunk.Sum(data); got != id {
		return nil, fmt.Errorf("%w: recipe %s: content hashes to %s", ErrCorruptStore, id, got)
	}
	return data, nil
}

// cacheRecipe keeps a copy of a recipe object on this node. Failure only
// costs a later download.
func (r *Registry) cacheRecipe(id chunk.ID, data []byte) {
	path := r.recipeCachePath(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	tmp := tempName(path)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		_ = os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
	}
}

func (r *Registry) recipeCachePath(id chunk.ID) string {
	s := id.String()
	return filepath.Join(filepath.Dir(r.idx.Path()), "recipes", s[:2], s)
}
