package objectstore

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors. Backends wrap them so callers test with errors.Is.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed: a conditional write lost (the object exists for a
	// create-only write, or its ETag changed for an If-Match write).
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrInvalidKey: a key that is empty, absolute, or escapes its prefix.
	ErrInvalidKey = errors.New("invalid object key")
	// ErrConfig: the configuration is incomplete or malformed; the message
	// names the setting.
	ErrConfig = errors.New("object store configuration")
	// ErrInvalidRange: a ranged read starts or ends past the end of the
	// object.
	ErrInvalidRange = errors.New("range past end of object")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string // relative to the client's prefix
	Size    int64
	ETag    string // opaque; changes whenever the content is replaced
	ModTime time.Time
}

// PutOptions makes a write conditional. The zero value overwrites.
type PutOptions struct {
	// IfNoneMatch makes the write create-only: it fails with
	// ErrPreconditionFailed when the key exists.
	IfNoneMatch bool
	// IfMatch, when set, replaces the object only while its ETag equals
	// this value; otherwise the write fails with ErrPreconditionFailed.
	IfMatch string
}

// Backend is the one interface every store implements. Keys are
// slash-separated, relative, and already validated by Client.
//
// Contracts:
//   - Put is atomic: readers see the old object or the whole new one. body
//     is read from its start; a retry seeks it back to 0.
//   - Get with length < 0 reads to the end. A range past the end is an error.
//   - Delete of a missing key is not an error.
//   - List calls fn for every key under prefix in lexical order; fn's error
//     stops the listing and is returned.
//   - Errors wrap ErrNotFound / ErrPreconditionFailed where they apply;
//     IsPermanent tells a retry layer which other errors not to retry.
type Backend interface {
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error)
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// String names the location for messages, without credentials.
	String() string
}
