package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

const (
	// DefaultPrefix is the key prefix of a Config whose Prefix is empty.
	DefaultPrefix = "epoch/"
	// DefaultMaxAttempts is how often the retry decorator tries a call.
	DefaultMaxAttempts = 5
	// DefaultBackoffBase is the first retry delay; it doubles per attempt.
	DefaultBackoffBase = 200 * time.Millisecond
	// DefaultBackoffMax caps one retry delay.
	DefaultBackoffMax = 10 * time.Second
)

// Client is the object store used by the rest of epoch-dedup: a backend
// (S3 or a local folder) behind a request counter and the retry decorator.
// Keys are relative to the client's prefix and validated by ValidateKey.
// A Client is safe for concurrent use.
type Client struct {
	prefix string
	b      Backend // retry(counting(backend))
	count  *countingBackend
}

// TakesSpools reports whether a Put of a Spool made in dir keeps the file
// itself instead of reading its bytes: the folder store, on Linux, with dir
// on its filesystem. Nothing reads such a spool's bytes back, so they may
// be written around the page cache (Spool.Writer).
func (c *Client) TakesSpools(dir string) bool {
	t, ok := c.count.b.(interface{ takesSpools(dir string) bool })
	return ok && t.takesSpools(dir)
}

// Stats counts what reached the backend, retries included: one request per
// backend call (a multipart S3 upload is one PutRequest), BytesUp is the
// size of every Put attempt, BytesDown the bytes actually read from Get
// bodies.
type Stats struct {
	PutRequests   int64
	GetRequests   int64
	OtherRequests int64 // Stat, Delete, List
	BytesUp       int64
	BytesDown     int64
}

// Option tunes a Client. Out-of-range values fall back to the defaults.
type Option func(*clientOptions)

type clientOptions struct {
	retry retryPolicy
}

// WithMaxAttempts sets how often a failing transient call is tried in all
// (default DefaultMaxAttempts); 1 disables retries.
func WithMaxAttempts(n int) Option {
	return func(o *clientOptions) {
		if n >= 1 {
			o.retry.maxAttempts = n
		}
	}
}

// WithBackoff sets the first retry delay and the cap on one delay
// (defaults DefaultBackoffBase, DefaultBackoffMax). Delays get up to 50 %
// random jitter.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(o *clientOptions) {
		if base > 0 {
			o.retry.base = base
		}
		if maxDelay > 0 {
			o.retry.max = maxDelay
		}
	}
}

// New opens the store cfg describes: a local folder for a file:// (or bare
// absolute path) endpoint, S3 otherwise.
func New(cfg *Config, opts ...Option) (*Client, error) {
	b, err := NewBackend(cfg)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if !cfg.IsLocal() {
		// The local folder is itself the store root; bucket and prefix
		// only place the store inside a shared bucket.
		prefix = cfg.EffectivePrefix()
	}
	return NewFromBackend(b, prefix, opts...), nil
}

// NewLocal opens (creating it if needed) a store in the folder dir.
func NewLocal(dir string, opts ...Option) (*Client, error) {
	b, err := NewLocalBackend(dir)
	if err != nil {
		return nil, err
	}
	return NewFromBackend(b, "", opts...), nil
}

// NewFromBackend wraps b in the request counter and the retry decorator.
// prefix is prepended to every key ("" for none; a trailing slash is added
// when missing). Tests use it to put a fault-injecting fake around a real
// backend.
func NewFromBackend(b Backend, prefix string, opts ...Option) *Client {
	o := clientOptions{retry: retryPolicy{
		maxAttempts: DefaultMaxAttempts,
		base:        DefaultBackoffBase,
		max:         DefaultBackoffMax,
	}}
	for _, opt := range opts {
		opt(&o)
	}
	prefix = strings.TrimLeft(prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	cb := &countingBackend{b: b}
	return &Client{
		prefix: prefix,
		b:      newRetryBackend(cb, o.retry),
		count:  cb,
	}
}

// ValidateKey rejects keys that could escape the prefix or alias another
// key on a filesystem: empty keys, a leading '/', empty, "." or ".."
// segments, backslashes and NUL bytes. Errors wrap ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("%w: %q contains a backslash or NUL", ErrInvalidKey, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: %q has an empty segment or a leading or trailing slash", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidKey, key, seg)
		}
	}
	return nil
}

// validatePrefix checks a List prefix: empty, or a key, or a key followed
// by a slash.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("list prefix: %w", err)
	}
	return nil
}

func (c *Client) full(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return c.prefix + key, nil
}

func (c *Client) rel(info ObjectInfo) ObjectInfo {
	info.Key = strings.TrimPrefix(info.Key, c.prefix)
	return info
}

// Put stores size bytes from body under key. body is read from its start
// (a retry seeks it back to 0). With opts.IfNoneMatch or opts.IfMatch the
// write is conditional and fails with ErrPreconditionFailed when the
// condition does not hold.
//
// A create-only write whose response was lost is retried and then fails
// with ErrPreconditionFailed although the first attempt succeeded: callers
// writing content-addressed keys treat ErrPreconditionFailed from a
// create-only write as success (the stored bytes are the same).
func (c *Client) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error) {
	full, err := c.full(key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if size < 0 {
		return ObjectInfo{}, fmt.Errorf("put %s: negative size %d", key, size)
	}
	info, err := c.b.Put(ctx, full, body, size, opts)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	return c.rel(info), nil
}

// PutBytes is Put for data held in memory.
func (c *Client) PutBytes(ctx context.Context, key string, data []byte, opts PutOptions) (ObjectInfo, error) {
	return c.Put(ctx, key, bytes.NewReader(data), int64(len(data)), opts)
}

// Get opens key for reading length bytes from offset (length < 0: to the
// end). A missing key fails here with ErrNotFound, a range past the end
// with ErrInvalidRange. Only opening is retried; the caller closes the
// reader.
func (c *Client) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	full, err := c.full(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: %w: negative offset %d", key, ErrInvalidRange, offset)
	}
	rc, err := c.b.Get(ctx, full, offset, length)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return rc, nil
}

// GetBytes reads the whole object key, refusing objects larger than limit
// bytes (a hostile or corrupt store must not make us allocate without
// bound). The returned ObjectInfo describes the version that was read, so
// its ETag is safe to use for an If-Match write.
func (c *Client) GetBytes(ctx context.Context, key string, limit int64) ([]byte, ObjectInfo, error) {
	full, err := c.full(key)
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	if limit < 0 {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: negative limit %d", key, limit)
	}
	rc, info, err := c.openWithInfo(ctx, full)
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	defer func() { _ = rc.Close() }()
	if info.Size > limit {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: object is %d bytes, limit %d", key, info.Size, limit)
	}
	// Read one byte more than allowed so a size that lied is still caught.
	// bytes.MinRead spare: ReadFrom grows a full buffer before it sees EOF,
	// which would copy a 20 MB recipe object into one twice its size.
	buf := bytes.NewBuffer(make([]byte, 0, min(max(info.Size, 0), limit)+bytes.MinRead))
	n, err := buf.ReadFrom(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	if n > limit {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: object exceeds limit %d", key, limit)
	}
	info.Key = key
	info.Size = n
	return buf.Bytes(), info, nil
}

// openWithInfo opens the whole object and describes the version opened.
func (c *Client) openWithInfo(ctx context.Context, full string) (io.ReadCloser, ObjectInfo, error) {
	rc, err := c.b.Get(ctx, full, 0, -1)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if info, ok := readerInfo(rc); ok {
		return rc, info, nil
	}
	// A backend that cannot describe the opened version: a stat after
	// opening could pair old bytes with a newer ETag (a lost update under
	// If-Match), so stat first and open again.
	_ = rc.Close()
	info, err := c.b.Stat(ctx, full)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	rc, err = c.b.Get(ctx, full, 0, -1)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return rc, info, nil
}

// Stat describes key; ErrNotFound when it does not exist.
func (c *Client) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := c.full(key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	info, err := c.b.Stat(ctx, full)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return c.rel(info), nil
}

// Delete removes key; a missing key is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	full, err := c.full(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := c.b.Delete(ctx, full); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List calls fn for every key starting with prefix ("" for all), in
// lexical order, with keys relative to the client's prefix. An error from
// fn stops the listing and is returned unwrapped.
func (c *Client) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	var fnErr error
	err := c.b.List(ctx, c.prefix+prefix, func(info ObjectInfo) error {
		if fnErr = fn(c.rel(info)); fnErr != nil {
			return fnErr
		}
		return nil
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// String names the store without credentials, e.g.
// "s3://bucket/epoch/ at host:9000" or "file:///srv/store".
func (c *Client) String() string {
	if d, ok := c.count.b.(describer); ok {
		return d.describe(c.prefix)
	}
	if c.prefix == "" {
		return c.count.b.String()
	}
	return c.count.b.String() + " prefix " + c.prefix
}

// describer is implemented by backends that can name a location inside
// themselves better than "String() prefix p".
type describer interface {
	describe(prefix string) string
}

// Stats returns the request counters so far.
func (c *Client) Stats() Stats {
	return c.count.stats()
}
