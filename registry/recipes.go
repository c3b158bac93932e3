package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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

// storeRecipe writes recipe (whose ContentKey is key) as a full object, or
// as a patch against base when that is much smaller, and returns its
// object ID. A file that did not change yields the base's own ID and sends
// nothing.
func (r *Registry) storeRecipe(ctx context.Context, recipe *manifest.Recipe, key chunk.ID, base *baseRecipe) (chunk.ID, error) {
	if base != nil && base.recipe.Equal(recipe) {
		return base.id, nil
	}
	// The same content pushed again (the same memory saved to a new file)
	// has a recipe object already: name it instead of encoding the recipe
	// (a 1 GiB memory file's is 6 MB of zstd) only to find it stored.
	if id, ok, err := r.idx.KnownRecipe(key); err == nil && ok {
		if _, err := r.store.Stat(ctx, recipeKey(id)); err == nil {
			return id, nil
		}
	}
	full, err := r.encodeRecipe(recipe)
	if err != nil {
		return chunk.ID{}, err
	}
	defer full.discard()
	obj := full
	if base != nil {
		ops := manifest.Diff(base.recipe, recipe)
		patch, err := manifest.EncodePatch(base.id, base.depth+1, recipe.Size, ops)
		if err != nil {
			return chunk.ID{}, fmt.Errorf("encode recipe patch: %w", err)
		}
		if manifest.Plan(base.depth, int(min(full.size, math.MaxInt)), len(patch)) {
			obj = &encodedRecipe{id: chunk.Sum(patch), size: int64(len(patch)), data: patch}
		}
	}
	// A full object the store holds is remembered; failing to only costs
	// the next push of this content an encoding.
	remember := func() {
		if obj == full {
			_ = r.idx.RememberRecipe(key, full.id)
		}
	}
	if _, err := r.store.Stat(ctx, recipeKey(obj.id)); err == nil {
		remember()
		return obj.id, nil
	}
	body, err := obj.body()
	if err == nil {
		err = r.putImmutableBody(ctx, recipeKey(obj.id), body, obj.size)
	}
	if err != nil {
		return chunk.ID{}, fmt.Errorf("write recipe %s: %w", obj.id, err)
	}
	r.keepRecipe(obj)
	remember()
	return obj.id, nil
}

// spoolRecipeExtents is the size from which a full recipe object is
// encoded into a file in the cache dir (manifest.WriteFull) instead of
// memory: 65536 extents are 2 MB encoded; a 12 GiB memory file's 3
// million would be over 100 MB, held twice by manifest.EncodeFull.
const spoolRecipeExtents = 1 << 16

// encodedRecipe is a recipe object ready to upload: in memory, or in a
// spool file when large.
type encodedRecipe struct {
	id   chunk.ID
	size int64
	data []byte
	f    *os.File
}

// encodeRecipe encodes recipe as a full object. Both ways give the same
// bytes.
func (r *Registry) encodeRecipe(recipe *manifest.Recipe) (*encodedRecipe, error) {
	if len(recipe.Extents) < r.spoolExtents {
		data, err := manifest.EncodeFull(recipe)
		if err != nil {
			return nil, fmt.Errorf("encode recipe: %w", err)
		}
		return &encodedRecipe{id: chunk.Sum(data), size: int64(len(data)), data: data}, nil
	}
	f, err := os.CreateTemp(r.spoolDir, "recipe-*.spool")
	if err != nil {
		return nil, fmt.Errorf("spool recipe: %w", err)
	}
	e := &encodedRecipe{f: f}
	if e.id, e.size, err = manifest.WriteFull(f, recipe); err != nil {
		e.discard()
		return nil, fmt.Errorf("spool recipe: %w", err)
	}
	return e, nil
}

func (e *encodedRecipe) body() (io.ReadSeeker, error) {
	if e.f == nil {
		return bytes.NewReader(e.data), nil
	}
	if _, err := e.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return e.f, nil
}

// discard removes a spool file that keepRecipe did not take.
func (e *encodedRecipe) discard() {
	if e.f != nil {
		_ = e.f.Close()
		_ = os.Remove(e.f.Name())
		e.f = nil
	}
}

// keepRecipe puts an uploaded object into the node's recipe cache: a
// spooled one by renaming its file, which is in the cache dir already.
func (r *Registry) keepRecipe(e *encodedRecipe) {
	if e.f == nil {
		r.cacheRecipe(e.id, e.data)
		return
	}
	path := r.recipeCachePath(e.id)
	if err := e.f.Close(); err != nil || os.MkdirAll(filepath.Dir(path), 0o755) != nil {
		return // discard removes it
	}
	if os.Rename(e.f.Name(), path) == nil {
		e.f = nil
	}
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
