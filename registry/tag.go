package registry

import (
	"context"
	"fmt"

	"github.com/cocoonstack/epoch-dedup/manifest"
)

// Tag makes dstName:dstTag name the same content as srcName:srcTag (srcTag
// may be a manifest digest, "sha256:<hex>"). The source manifest is copied
// with only its name and tag rewritten, so the new tag moves no content
// (every blob it names is already in the store); the catalog is updated as
// for a push. Empty tags mean "latest".
func (r *Registry) Tag(ctx context.Context, srcName, srcTag, dstName, dstTag string) error {
	_, err := r.TagDigest(ctx, srcName, srcTag, dstName, dstTag)
	return err
}

// TagDigest is Tag returning the digest of the manifest written for
// dstName:dstTag.
func (r *Registry) TagDigest(ctx context.Context, srcName, srcTag, dstName, dstTag string) (string, error) {
	if srcTag == "" {
		srcTag = defaultTag
	}
	if dstTag == "" {
		dstTag = defaultTag
	}
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("tag %s:%s as %s:%s: %w", srcName, srcTag, dstName, dstTag, err)
	}
	if err := checkRef(srcName, srcTag); err != nil {
		return fail(err)
	}
	if err := manifest.ValidateName(dstName); err != nil {
		return fail(err)
	}
	if err := manifest.ValidateTag(dstTag); err != nil {
		return fail(err)
	}
	data, err := r.ManifestJSON(ctx, srcName, srcTag)
	if err != nil {
		return fail(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return fail(err)
	}
	m.Name, m.Tag = dstName, dstTag
	out, err := m.Marshal()
	if err != nil {
		return fail(err)
	}
	digest, err := r.pushManifestJSON(ctx, dstName, dstTag, out)
	if err != nil {
		return fail(err)
	}
	return digest, nil
}
