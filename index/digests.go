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

func checkDigests(tx *bolt.Tx, report func(string, ...any) bool) {
	_ = tx.Bucket(bucketDigests).ForEach(func(k, v []byte) error {
		if (len(k) != chunk.IDSize || len(v) != DigestSize) && !report("digest record %x: %d-byte key, %d-byte value", k, len(k), len(v)) {
			return errStop
		}
		return nil
	})
}
