package registry

import (
	"context"
	"errors"
	"fmt"

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
	return id, nil
}

// loadRecipe reads and verifies a recipe object and resolves its patch
// chain down to a full recipe.
func (r *Registry) loadRecipe(ctx context.Context, id chunk.ID) (*baseRecipe, error) {
	var chain []*manifest.Object
	cur := id
	for {
		if len(chain) > manifest.MaxChainDepth {
			return nil, fmt.Errorf("%w: recipe %s: patch chain longer than %d", ErrCorruptStore, id, manifest.MaxChainDepth)
		}
		data, _, err := r.store.GetBytes(ctx, recipeKey(cur), maxRecipeObject)
		if err != nil {
			if errors.Is(err, objectstore.ErrNotFound) {
				return nil, fmt.Errorf("%w: recipe %s is missing", ErrCorruptStore, cur)
			}
			return nil, fmt.Errorf("read recipe %s: %w", cur, err)
		}
		if got := chunk.Sum(data); got != cur {
			return nil, fmt.Errorf("%w: recipe %s: content hashes to %s", ErrCorruptStore, cur, got)
		}
		obj, err := manifest.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%w: recipe %s: %w", ErrCorruptStore, cur, err)
		}
		chain = append(chain, obj)
		if obj.Kind == manifest.KindFull {
			break
		}
		cur = obj.Base
	}
	rec := chain[len(chain)-1].Recipe
	for i := len(chain) - 2; i >= 0; i-- {
		next, err := manifest.Apply(rec, chain[i])
		if err != nil {
			return nil, fmt.Errorf("%w: recipe %s: %w", ErrCorruptStore, id, err)
		}
		rec = next
	}
	return &baseRecipe{id: id, depth: len(chain) - 1, recipe: rec}, nil
}
