package objectstoretest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// ErrInjected marks every failure Faulty makes up. It is transient (not
// Permanent, wraps no sentinel), so the retry decorator of a Client retries
// it, except a cut Get body: reads of an open body are never retried.
var ErrInjected = errors.New("objectstoretest: injected fault")

// FaultConfig sets how often Faulty injects each fault. Rates are
// probabilities in [0, 1] drawn per call; zero disables the fault.
type FaultConfig struct {
	// Seed seeds the fault choices (math/rand/v2 PCG). Calls from several
	// goroutines interleave, so only the rates, not the exact sequence, are
	// reproducible under concurrency.
	Seed uint64
	// ErrorRate: any call (Put, Get, Stat, Delete, List) fails before it
	// reaches the backend with a transient error.
	ErrorRate float64
	// LatencyRate: a call is delayed by up to MaxLatency (uniform) first.
	LatencyRate float64
	MaxLatency  time.Duration
	// CutRate: a Get succeeds but its body ends with io.ErrUnexpectedEOF
	// after a random number of bytes in [0, CutMax] (CutMax 0: 64 KiB),
	// fewer than the body holds when it is that short.
	CutRate float64
	CutMax  int64
	// LostPutRate: a Put is written to the backend, then reported failed
	// (the response was lost).
	LostPutRate float64
	// FailPutRate: a Put fails before anything is written.
	FailPutRate float64
	// Match, if set, limits the faults to keys for which it returns true
	// (full backend keys, prefix included). List prefixes are matched too.
	Match func(key string) bool
}

// FaultCounts counts the calls Faulty saw and the faults it injected.
type FaultCounts struct {
	Calls      int64 // calls that reached Faulty
	Errors     int64 // transient errors before a call
	Latencies  int64 // delayed calls
	Cuts       int64 // Get bodies cut short (counted when the reader hits the cut)
	LostPuts   int64 // Puts written but reported failed
	FailedPuts int64 // Puts failed before writing
}

// Faults is the number of failures injected (latency is not a failure).
func (c FaultCounts) Faults() int64 { return c.Errors + c.Cuts + c.LostPuts + c.FailedPuts }

func (c FaultCounts) String() string {
	return fmt.Sprintf("%d calls: %d errors, %d cut bodies, %d lost puts, %d failed puts, %d delays",
		c.Calls, c.Errors, c.Cuts, c.LostPuts, c.FailedPuts, c.Latencies)
}

// Faulty is an objectstore.Backend that injects faults on top of a real
// backend, for tests. It is safe for concurrent use.
type Faulty struct {
	b   objectstore.Backend
	cfg FaultConfig

	enabled atomic.Bool
	mu      sync.Mutex // guards rng
	rng     *rand.Rand

	calls, errs, lat, cuts, lost, failed atomic.Int64
}

var _ objectstore.Backend = (*Faulty)(nil)

// NewFaulty wraps b. Faults are enabled from the start.
func NewFaulty(b objectstore.Backend, cfg FaultConfig) *Faulty {
	if cfg.CutMax <= 0 {
		cfg.CutMax = 64 << 10
	}
	f := &Faulty{b: b, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5fa17))} //nolint:gosec // test faults
	f.enabled.Store(true)
	return f
}

// NewFaultyClient wraps b in a Faulty and returns a Client over it, with
// the retry decorator above the faults (objectstore.NewFromBackend: prefix
// is prepended to every key; use "" for a local backend, whose folder is
// the store root, and a unique prefix for S3). Retry delays default to
// 5 ms doubling up to 100 ms so tests stay fast; opts override them.
func NewFaultyClient(b objectstore.Backend, cfg FaultConfig, prefix string, opts ...objectstore.Option) (*objectstore.Client, *Faulty) {
	f := NewFaulty(b, cfg)
	opts = append([]objectstore.Option{objectstore.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}, opts...)
	return objectstore.NewFromBackend(f, prefix, opts...), f
}

// SetEnabled turns fault injection on or off; calls pass through untouched
// (but counted) while it is off.
func (f *Faulty) SetEnabled(on bool) { f.enabled.Store(on) }

// Enabled reports whether faults are injected.
func (f *Faulty) Enabled() bool { return f.enabled.Load() }

// Counts returns the calls seen and faults injected so far.
func (f *Faulty) Counts() FaultCounts {
	return FaultCounts{
		Calls: f.calls.Load(), Errors: f.errs.Load(), Latencies: f.lat.Load(),
		Cuts: f.cuts.Load(), LostPuts: f.lost.Load(), FailedPuts: f.failed.Load(),
	}
}

// Unwrap returns the wrapped backend.
func (f *Faulty) Unwrap() objectstore.Backend { return f.b }

func (f *Faulty) String() string { return f.b.String() }

// roll draws one decision: true with probability p.
func (f *Faulty) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < p
}

func (f *Faulty) int64n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Int64N(n)
}

// active reports whether faults apply to key.
func (f *Faulty) active(key string) bool {
	return f.enabled.Load() && (f.cfg.Match == nil || f.cfg.Match(key))
}

// before counts the call and injects latency and a transient error.
func (f *Faulty) before(ctx context.Context, op, key string) error {
	f.calls.Add(1)
	if !f.active(key) {
		return nil
	}
	if f.cfg.MaxLatency > 0 && f.roll(f.cfg.LatencyRate) {
		f.lat.Add(1)
		t := time.NewTimer(time.Duration(f.int64n(int64(f.cfg.MaxLatency)) + 1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if f.roll(f.cfg.ErrorRate) {
		f.errs.Add(1)
		return fmt.Errorf("%s %s: %w: connection reset", op, key, ErrInjected)
	}
	return nil
}

// Put implements objectstore.Backend.
func (f *Faulty) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	if err := f.before(ctx, "put", key); err != nil {
		return objectstore.ObjectInfo{}, err
	}
	if f.active(key) && f.roll(f.cfg.FailPutRate) {
		f.failed.Add(1)
		return objectstore.ObjectInfo{}, fmt.Errorf("put %s: %w: write refused", key, ErrInjected)
	}
	info, err := f.b.Put(ctx, key, body, size, opts)
	if err == nil && f.active(key) && f.roll(f.cfg.LostPutRate) {
		f.lost.Add(1)
		return objectstore.ObjectInfo{}, fmt.Errorf("put %s: %w: response lost", key, ErrInjected)
	}
	return info, err
}

// Get implements objectstore.Backend.
func (f *Faulty) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := f.before(ctx, "get", key); err != nil {
		return nil, err
	}
	rc, err := f.b.Get(ctx, key, offset, length)
	if err != nil || !f.active(key) || !f.roll(f.cfg.CutRate) {
		// Unwrapped, so the body keeps what it knows of its version.
		return rc, err
	}
	limit := f.int64n(f.cfg.CutMax + 1)
	if length > 0 && limit >= length {
		limit = f.int64n(length) // cut strictly inside the body
	}
	return &cutReader{rc: rc, left: limit, cuts: &f.cuts}, nil
}

// Stat implements objectstore.Backend.
func (f *Faulty) Stat(ctx context.Context, key string) (objectstore.ObjectInfo, error) {
	if err := f.before(ctx, "stat", key); err != nil {
		return objectstore.ObjectInfo{}, err
	}
	return f.b.Stat(ctx, key)
}

// Delete implements objectstore.Backend.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	if err := f.before(ctx, "delete", key); err != nil {
		return err
	}
	return f.b.Delete(ctx, key)
}

// List implements objectstore.Backend. A fault fails the listing before it
// starts.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(objectstore.ObjectInfo) error) error {
	if err := f.before(ctx, "list", prefix); err != nil {
		return err
	}
	return f.b.List(ctx, prefix, fn)
}

// cutReader returns left bytes of rc, then io.ErrUnexpectedEOF. A body that
// ends before the cut ends normally.
type cutReader struct {
	rc   io.ReadCloser
	left int64
	cuts *atomic.Int64
	cut  bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if !c.cut {
			// A body that ends exactly at the cut was not cut.
			var one [1]byte
			if n, err := io.ReadFull(c.rc, one[:]); n == 0 && errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			c.cut = true
			c.cuts.Add(1)
		}
		return 0, fmt.Errorf("%w: %w: body cut", io.ErrUnexpectedEOF, ErrInjected)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }
