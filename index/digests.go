package index

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// DigestSize is the length of a remembered content digest (SHA-256).
const DigestSize = 32

// RememberDigest records that the bytes named by key (a recipe's
// manifest.Recipe.ContentKey) have the SHA-256 digest. Only a digest this
// node computed, or verified against the bytes, may be remembered: a push
// that finds key here returns the digest without hashing the file again.
func (db *DB) RememberDigest(key chunk.ID, digest [DigestSize]byte) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDigests).Put(key[:], digest[:])
	})
	if err != nil {
		return fmt.Errorf("remember digest of %s: %w", key, err)
	}
	return nil
}

// KnownDigest returns the digest RememberDigest recorded for key.
func (db *DB) KnownDigest(key chunk.ID) (digest [DigestSize]byte, ok bool, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDigests).Get(key[:])
		if v == nil {
			return nil
		}
		if len(v) != DigestSize {
			return fmt.Errorf("%w: digest of %s has %d bytes", ErrCorrupt, key, len(v))
		}
		copy(digest[:], v)
		ok = true
		return nil
	})
	if err != nil {
		return digest, false, fmt.Errorf("known digest of %s: %w", key, err)
	}
	return digest, ok, nil
}

// RememberRecipe records that the recipe with content key key is stored
// as the full recipe object id: a push of the same content (the same
// memory saved to a new file) names that object instead of encoding the
// recipe again. The caller checks that the object still exists before it
// uses it.
func (db *DB) RememberRecipe(key, id chunk.ID) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecipeIDs).Put(key[:], id[:])
	})
	if err != nil {
		return fmt.Errorf("remember recipe of %s: %w", key, err)
	}
	return nil
}

// KnownRecipe returns the recipe object RememberRecipe recorded for key.
func (db *DB) KnownRecipe(key chunk.ID) (id chunk.ID, ok bool, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecipeIDs).Get(key[:])
		if v == nil {
			return nil
		}
		if len(v) != chunk.IDSize {
			return fmt.Errorf("%w: recipe id of %s has %d bytes", ErrCorrupt, key, len(v))
		}
		copy(id[:], v)
		ok = true
		return nil
	})
	if err != nil {
		return id, false, fmt.Errorf("known recipe of %s: %w", key, err)
	}
	return id, ok, nil
}

func checkDigests(tx *bolt.Tx, report func(string, ...any) bool) {
	for _, b := range []struct {
		name   []byte
		what   string
		values int
	}{{bucketDigests, "digest", DigestSize}, {bucketRecipeIDs, "recipe id", chunk.IDSize}} {
		err := tx.Bucket(b.name).ForEach(func(k, v []byte) error {
			if (len(k) != chunk.IDSize || len(v) != b.values) && !report("%s record %x: %d-byte key, %d-byte value", b.what, k, len(k), len(v)) {
				return errStop
			}
			return nil
		})
		if err != nil {
			return
		}
	}
}
