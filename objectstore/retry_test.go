package objectstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
)

var errTransient = errors.New("injected: connection reset")

// faultyBackend wraps a real backend and fails calls on demand.
type faultyBackend struct {
	objectstore.Backend

	mu    sync.Mutex
	calls map[string]int
	// fail decides, per method and 1-based call number, the error to
	// inject (nil: pass the call through).
	fail func(method string, call int) error
	// partialPut makes a failing Put read some of the body first, so a
	// retry must rewind it.
	partialPut bool
}

var _ objectstore.Backend = (*faultyBackend)(nil)

func newFaulty(t *testing.T, fail func(method string, call int) error) *faultyBackend {
	t.Helper()
	b, err := objectstore.NewLocalBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &faultyBackend{Backend: b, calls: map[string]int{}, fail: fail}
}

func (f *faultyBackend) inject(method string) error {
	f.mu.Lock()
	f.calls[method]++
	n := f.calls[method]
	f.mu.Unlock()
	if f.fail == nil {
		return nil
	}
	return f.fail(method, n)
}

func (f *faultyBackend) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *faultyBackend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	if err := f.inject("Put"); err != nil {
		if f.partialPut {
			_, _ = io.CopyN(io.Discard, body, 3)
		}
		return objectstore.ObjectInfo{}, err
	}
	return f.Backend.Put(ctx, key, body, size, opts)
}

func (f *faultyBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := f.inject("Get"); err != nil {
		return nil, err
	}
	return f.Backend.Get(ctx, key, offset, length)
}

func (f *faultyBackend) Stat(ctx context.Context, key string) (objectstore.ObjectInfo, error) {
	if err := f.inject("Stat"); err != nil {
		return objectstore.ObjectInfo{}, err
	}
	return f.Backend.Stat(ctx, key)
}

// List fails after delivering two keys on calls the policy picks.
func (f *faultyBackend) List(ctx context.Context, prefix string, fn func(objectstore.ObjectInfo) error) error {
	injected := f.inject("List")
	n := 0
	err := f.Backend.List(ctx, prefix, func(info objectstore.ObjectInfo) error {
		if injected != nil && n == 2 {
			return injected
		}
		n++
		return fn(info)
	})
	return err
}

func fastRetry(n int) []objectstore.Option {
	return []objectstore.Option{objectstore.WithMaxAttempts(n), objectstore.WithBackoff(time.Millisecond, 5*time.Millisecond)}
}

func TestRetry(t *testing.T) {
	failFirst := func(n int, err error) func(string, int) error {
		return func(_ string, call int) error {
			if call <= n {
				return err
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		fail      func(string, int) error
		attempts  int
		wantErr   error // nil: success
		wantCalls int
	}{
		{"transient then success", failFirst(2, errTransient), 5, nil, 3},
		{"transient exhausts attempts", failFirst(100, errTransient), 3, errTransient, 3},
		{"one attempt", failFirst(1, errTransient), 1, errTransient, 1},
		{"permanent not retried", failFirst(100, objectstore.Permanent(errTransient)), 5, errTransient, 1},
		{"not found not retried", failFirst(100, fmt.Errorf("x: %w", objectstore.ErrNotFound)), 5, objectstore.ErrNotFound, 1},
		{"precondition not retried", failFirst(100, objectstore.ErrPreconditionFailed), 5, objectstore.ErrPreconditionFailed, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFaulty(t, tt.fail)
			f.partialPut = true
			c := objectstore.NewFromBackend(f, "p", fastRetry(tt.attempts)...)
			_, err := c.PutBytes(t.Context(), "k", []byte("hello world"), objectstore.PutOptions{})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("put: %v, want %v", err, tt.wantErr)
			}
			if got := f.count("Put"); got != tt.wantCalls {
				t.Errorf("%d put calls, want %d", got, tt.wantCalls)
			}
			if got := c.Stats().PutRequests; got != int64(tt.wantCalls) {
				t.Errorf("stats count %d puts, want %d", got, tt.wantCalls)
			}
			if tt.wantErr != nil {
				return
			}
			// The retried body was rewound: the stored object is whole.
			data, _, err := c.GetBytes(t.Context(), "k", 100)
			if err != nil || string(data) != "hello world" {
				t.Errorf("stored %q, %v", data, err)
			}
			// Under the client's prefix in the backend.
			if _, err := f.Backend.Stat(t.Context(), "p/k"); err != nil {
				t.Errorf("backend stat p/k: %v", err)
			}
		})
	}
}

func TestRetry_GetAndStat(t *testing.T) {
	f := newFaulty(t, func(m string, call int) error {
		if (m == "Get" || m == "Stat") && call <= 2 {
			return errTransient
		}
		return nil
	})
	c := objectstore.NewFromBackend(f, "", fastRetry(5)...)
	if _, err := c.PutBytes(t.Context(), "k", []byte("abc"), objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Get(t.Context(), "k", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if string(b) != "bc" || f.count("Get") != 3 || f.count("Stat") != 3 {
		t.Errorf("get %q, %d gets, %d stats", b, f.count("Get"), f.count("Stat"))
	}
	if s := c.Stats(); s.BytesDown != 2 {
		t.Errorf("BytesDown = %d", s.BytesDown)
	}
}

func TestRetry_ContextCancelStops(t *testing.T) {
	f := newFaulty(t, func(string, int) error { return errTransient })
	c := objectstore.NewFromBackend(f, "", objectstore.WithMaxAttempts(1000), objectstore.WithBackoff(20*time.Millisecond, 20*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errTransient) {
		t.Errorf("err = %v, want the last error and the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the deadline", d)
	}
	if n := f.count("Stat"); n < 2 || n > 20 {
		t.Errorf("%d attempts in 100 ms", n)
	}

	// An already cancelled context makes no further attempt after the first.
	ctx2, cancel2 := context.WithCancel(t.Context())
	cancel2()
	before := f.count("Stat")
	if _, err := c.Stat(ctx2, "k"); err == nil {
		t.Error("stat with a cancelled ctx succeeded")
	}
	if n := f.count("Stat") - before; n != 1 {
		t.Errorf("%d attempts with a cancelled ctx", n)
	}
}

func TestRetry_ListResumes(t *testing.T) {
	f := newFaulty(t, func(m string, call int) error {
		if m == "List" && call == 1 {
			return errTransient
		}
		return nil
	})
	c := objectstore.NewFromBackend(f, "", fastRetry(3)...)
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := c.PutBytes(t.Context(), k, []byte(k), objectstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := c.List(t.Context(), "", func(info objectstore.ObjectInfo) error {
		got = append(got, info.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[a b c d]" || f.count("List") != 2 {
		t.Errorf("list = %q after %d calls", got, f.count("List"))
	}

	// fn's own error is returned as is and not retried.
	stop := errors.New("stop")
	before := f.count("List")
	if err := c.List(t.Context(), "", func(objectstore.ObjectInfo) error { return stop }); err != stop { //nolint:errorlint // must be the same value
		t.Errorf("list err = %v", err)
	}
	if f.count("List")-before != 1 {
		t.Error("a callback error was retried")
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errTransient, false},
		{fmt.Errorf("wrapped: %w", errTransient), false},
		{objectstore.Permanent(errTransient), true},
		{fmt.Errorf("wrapped: %w", objectstore.Permanent(errTransient)), true},
		{fmt.Errorf("x: %w", objectstore.ErrNotFound), true},
		{objectstore.ErrPreconditionFailed, true},
		{objectstore.ErrInvalidKey, true},
		{context.Canceled, true},
	} {
		if got := objectstore.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v", tc.err, got)
		}
	}
	if objectstore.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if !errors.Is(objectstore.Permanent(errTransient), errTransient) {
		t.Error("Permanent hides the wrapped error")
	}
}
