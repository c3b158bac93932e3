package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// retryPolicy bounds the retry decorator.
type retryPolicy struct {
	maxAttempts int
	base, max   time.Duration
}

// delay is the pause before attempt number attempt+1: base doubled per
// attempt, capped, with jitter in [d/2, d] so that many clients failing
// together do not retry in lockstep.
func (p retryPolicy) delay(attempt int) time.Duration {
	d := p.base
	for i := 1; i < attempt && d < p.max; i++ {
		d *= 2
	}
	d = min(d, p.max)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1) //nolint:gosec // jitter, not a secret
}

// retryBackend retries transient failures of the backend it wraps (restic's
// backend_retry decorator). It does not retry errors IsPermanent reports,
// and gives up when ctx is done.
type retryBackend struct {
	b Backend
	p retryPolicy
}

var _ Backend = (*retryBackend)(nil)

func newRetryBackend(b Backend, p retryPolicy) *retryBackend {
	return &retryBackend{b: b, p: p}
}

// do runs op until it succeeds, fails permanently, ctx ends or the
// attempts are used up.
func (r *retryBackend) do(ctx context.Context, op func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = op(); err == nil {
			return nil
		}
		if IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if attempt >= r.p.maxAttempts {
			if attempt == 1 {
				return err
			}
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(r.p.delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

func (r *retryBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error) {
	var info ObjectInfo
	err := r.do(ctx, func() error {
		// Every attempt sends the body from its start, including the first:
		// the contract says the body is read from its start.
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return Permanent(fmt.Errorf("rewind body: %w", err))
		}
		var err error
		info, err = r.b.Put(ctx, key, body, size, opts)
		return err
	})
	return info, err
}

// Get retries opening only: a failure while the caller reads the body is
// the caller's to handle (it knows how far it got).
func (r *retryBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.do(ctx, func() error {
		var err error
		rc, err = r.b.Get(ctx, key, offset, length)
		return err
	})
	return rc, err
}

func (r *retryBackend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	var info ObjectInfo
	err := r.do(ctx, func() error {
		var err error
		info, err = r.b.Stat(ctx, key)
		return err
	})
	return info, err
}

func (r *retryBackend) Delete(ctx context.Context, key string) error {
	return r.do(ctx, func() error { return r.b.Delete(ctx, key) })
}

// callbackError carries fn's error through the retry loop untouched and
// unretried.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

// List resumes a failed listing after the last key it delivered (keys come
// in lexical order), so fn sees every key once.
func (r *retryBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var last string
	started := false
	err := r.do(ctx, func() error {
		err := r.b.List(ctx, prefix, func(info ObjectInfo) error {
			if started && info.Key <= last {
				return nil
			}
			if err := fn(info); err != nil {
				return Permanent(&callbackError{err: err})
			}
			last, started = info.Key, true
			return nil
		})
		return err
	})
	if ce, ok := errors.AsType[*callbackError](err); ok {
		return ce.err
	}
	return err
}

func (r *retryBackend) String() string { return r.b.String() }
