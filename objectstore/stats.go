package objectstore

import (
	"context"
	"io"
	"sync/atomic"
)

// countingBackend counts calls and bytes at the backend boundary, below the
// retry decorator, so every attempt is counted as the store saw it.
type countingBackend struct {
	b Backend

	puts, gets, others atomic.Int64
	up, down           atomic.Int64
}

var _ Backend = (*countingBackend)(nil)

func (c *countingBackend) stats() Stats {
	return Stats{
		PutRequests:   c.puts.Load(),
		GetRequests:   c.gets.Load(),
		OtherRequests: c.others.Load(),
		BytesUp:       c.up.Load(),
		BytesDown:     c.down.Load(),
	}
}

func (c *countingBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error) {
	c.puts.Add(1)
	c.up.Add(size)
	return c.b.Put(ctx, key, body, size, opts)
}

func (c *countingBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	rc, err := c.b.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	cr := &countingReader{ReadCloser: rc, n: &c.down}
	if info, ok := readerInfo(rc); ok {
		return &infoReadCloser{ReadCloser: cr, info: info}, nil
	}
	return cr, nil
}

func (c *countingBackend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	c.others.Add(1)
	return c.b.Stat(ctx, key)
}

func (c *countingBackend) Delete(ctx context.Context, key string) error {
	c.others.Add(1)
	return c.b.Delete(ctx, key)
}

func (c *countingBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	c.others.Add(1)
	return c.b.List(ctx, prefix, fn)
}

func (c *countingBackend) String() string { return c.b.String() }

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// infoReadCloser is a Get body that knows which object version it reads:
// backends return it so GetBytes can hand out the ETag of exactly the
// bytes it read.
type infoReadCloser struct {
	io.ReadCloser
	info ObjectInfo
}

func (r *infoReadCloser) objectInfo() ObjectInfo { return r.info }

func readerInfo(rc io.ReadCloser) (ObjectInfo, bool) {
	if ir, ok := rc.(interface{ objectInfo() ObjectInfo }); ok {
		return ir.objectInfo(), true
	}
	return ObjectInfo{}, false
}
