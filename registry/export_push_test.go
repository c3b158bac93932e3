package registry

import "context"

// PushBlobRemembered is PushBlob also reporting whether the digest came
// from the node's memory of the content instead of hashing the file.
func (r *Registry) PushBlobRemembered(ctx context.Context, path string) (digest string, remembered bool, err error) {
	res, _, err := r.PushBlobStats(ctx, path, nil)
	if err != nil {
		return "", false, err
	}
	return res.digest, res.remembered, nil
}

// SpoolRecipesFrom makes r spool every recipe of at least n extents.
func (r *Registry) SpoolRecipesFrom(n int) { r.spoolExtents = n }

// SetMergeThreshold sets the node index's merge threshold; call it before
// the registry's first operation.
func (r *Registry) SetMergeThreshold(n int) { r.mergeThreshold = n }
