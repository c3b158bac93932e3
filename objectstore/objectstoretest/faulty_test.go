package objectstoretest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
)

// backends returns a fresh raw backend and the prefix to use with it, per
// store kind: local always, S3 when the test server is configured.
func backends(t *testing.T) map[string]func(t *testing.T) (objectstore.Backend, string) {
	out := map[string]func(t *testing.T) (objectstore.Backend, string){
		"local": func(t *testing.T) (objectstore.Backend, string) {
			b, err := objectstore.NewLocalBackend(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return b, ""
		},
	}
	if _, ok := objectstoretest.S3Config(t); ok {
		out["s3"] = func(t *testing.T) (objectstore.Backend, string) {
			cfg, _ := objectstoretest.S3Config(t)
			b, err := objectstore.NewBackend(cfg)
			if err != nil {
				t.Fatal(err)
			}
			prefix := cfg.EffectivePrefix()
			t.Cleanup(func() { objectstoretest.Empty(t, objectstore.NewFromBackend(b, prefix)) })
			return b, prefix
		}
	}
	return out
}

func TestFaulty_PassThroughWhenDisabled(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, prefix := mk(t)
			c, f := objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{
				Seed: 1, ErrorRate: 1, CutRate: 1, LostPutRate: 1, FailPutRate: 1,
			}, prefix, objectstore.WithMaxAttempts(1))
			f.SetEnabled(false)
			if _, err := c.PutBytes(ctx, "a/b", []byte("hello"), objectstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			data, info, err := c.GetBytes(ctx, "a/b", 100)
			if err != nil || string(data) != "hello" || info.ETag == "" {
				t.Fatalf("GetBytes = %q %+v %v", data, info, err)
			}
			var keys []string
			if err := c.List(ctx, "a/", func(oi objectstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil || len(keys) != 1 || keys[0] != "a/b" {
				t.Fatalf("List = %v %v", keys, err)
			}
			if n := f.Counts().Faults(); n != 0 {
				t.Fatalf("disabled Faulty injected %d faults", n)
			}
			if f.Counts().Calls == 0 {
				t.Fatal("calls not counted")
			}
			// The prefix is applied by the client, below it the raw keys.
			if _, err := b.Stat(ctx, prefix+"a/b"); err != nil {
				t.Fatalf("object not under prefix %q: %v", prefix, err)
			}
		})
	}
}

func TestFaulty_EachFault(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, prefix := mk(t)
			raw := objectstore.NewFromBackend(b, prefix, objectstore.WithMaxAttempts(1))
			one := objectstore.WithMaxAttempts(1)

			// Transient error: not permanent, nothing written.
			c, f := objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{ErrorRate: 1}, prefix, one)
			_, err := c.PutBytes(ctx, "err", []byte("x"), objectstore.PutOptions{})
			if !errors.Is(err, objectstoretest.ErrInjected) || objectstore.IsPermanent(err) {
				t.Fatalf("error fault: %v (permanent %v)", err, objectstore.IsPermanent(err))
			}
			if _, err := raw.Stat(ctx, "err"); !errors.Is(err, objectstore.ErrNotFound) {
				t.Fatalf("error fault wrote the object: %v", err)
			}
			for _, op := range []func() error{
				func() error { _, err := c.Stat(ctx, "err"); return err },
				func() error { _, err := c.Get(ctx, "err", 0, -1); return err },
				func() error { return c.Delete(ctx, "err") },
				func() error { return c.List(ctx, "", func(objectstore.ObjectInfo) error { return nil }) },
			} {
				if err := op(); !errors.Is(err, objectstoretest.ErrInjected) {
					t.Fatalf("error fault on a read: %v", err)
				}
			}
			if got := f.Counts(); got.Errors != 5 || got.Calls != 5 {
				t.Fatalf("counts %v", got)
			}

			// Failed put: nothing written.
			c, f = objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{FailPutRate: 1}, prefix, one)
			if _, err := c.PutBytes(ctx, "failed", []byte("x"), objectstore.PutOptions{}); !errors.Is(err, objectstoretest.ErrInjected) {
				t.Fatalf("failed put: %v", err)
			}
			if _, err := raw.Stat(ctx, "failed"); !errors.Is(err, objectstore.ErrNotFound) {
				t.Fatalf("failed put wrote: %v", err)
			}
			if f.Counts().FailedPuts != 1 {
				t.Fatalf("counts %v", f.Counts())
			}

			// Lost put: written, reported failed; the retry of a create-only
			// write then sees the precondition fail.
			c, f = objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{LostPutRate: 1}, prefix, one)
			if _, err := c.PutBytes(ctx, "lost", []byte("kept"), objectstore.PutOptions{IfNoneMatch: true}); !errors.Is(err, objectstoretest.ErrInjected) {
				t.Fatalf("lost put: %v", err)
			}
			if data, _, err := raw.GetBytes(ctx, "lost", 10); err != nil || string(data) != "kept" {
				t.Fatalf("lost put not written: %q %v", data, err)
			}
			f.SetEnabled(false)
			if _, err := c.PutBytes(ctx, "lost", []byte("kept"), objectstore.PutOptions{IfNoneMatch: true}); !errors.Is(err, objectstore.ErrPreconditionFailed) {
				t.Fatalf("second create-only write: %v", err)
			}
			if f.Counts().LostPuts != 1 {
				t.Fatalf("counts %v", f.Counts())
			}

			// Cut body: some bytes, then io.ErrUnexpectedEOF.
			payload := bytes.Repeat([]byte("0123456789"), 10000)
			if _, err := raw.PutBytes(ctx, "big", payload, objectstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			c, f = objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{CutRate: 1, CutMax: 1000, Seed: 3}, prefix, one)
			rc, err := c.Get(ctx, "big", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) > 1000 || !bytes.Equal(got, payload[:len(got)]) {
				t.Fatalf("cut body: %d bytes, %v", len(got), err)
			}
			rc, err = c.Get(ctx, "big", 10, 20)
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(rc)
			_ = rc.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= 20 {
				t.Fatalf("cut range: %d bytes, %v", len(got), err)
			}
			if _, _, err := c.GetBytes(ctx, "big", 1<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("GetBytes of a cut body: %v", err)
			}
			if f.Counts().Cuts < 3 {
				t.Fatalf("counts %v", f.Counts())
			}

			// Latency.
			c, f = objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{LatencyRate: 1, MaxLatency: 20 * time.Millisecond}, prefix, one)
			if _, err := c.Stat(ctx, "big"); err != nil {
				t.Fatal(err)
			}
			if f.Counts().Latencies != 1 {
				t.Fatalf("counts %v", f.Counts())
			}

			// Match limits faults to some keys.
			c, _ = objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{ErrorRate: 1, Match: func(k string) bool { return bytes.HasSuffix([]byte(k), []byte("err")) }}, prefix, one)
			if _, err := c.Stat(ctx, "big"); err != nil {
				t.Fatalf("unmatched key faulted: %v", err)
			}
			if _, err := c.Stat(ctx, "err"); !errors.Is(err, objectstoretest.ErrInjected) {
				t.Fatalf("matched key: %v", err)
			}
		})
	}
}

// TestFaulty_RetryHeals: with a moderate error rate the client's retries
// hide every transient fault, and the rates come out about as configured.
func TestFaulty_RetryHeals(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, prefix := mk(t)
			c, f := objectstoretest.NewFaultyClient(b, objectstoretest.FaultConfig{
				Seed: 42, ErrorRate: 0.2, FailPutRate: 0.1, LostPutRate: 0.1,
				LatencyRate: 0.1, MaxLatency: time.Millisecond,
			}, prefix, objectstore.WithMaxAttempts(12), objectstore.WithBackoff(time.Millisecond, 2*time.Millisecond))
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for w := range 4 {
				wg.Go(func() {
					for i := range 25 {
						key := fmt.Sprintf("k/%d-%d", w, i)
						_, err := c.PutBytes(ctx, key, []byte(key), objectstore.PutOptions{})
						if err != nil {
							errs <- err
							continue
						}
						data, _, err := c.GetBytes(ctx, key, 100)
						if err != nil || string(data) != key {
							errs <- fmt.Errorf("get %s: %q %w", key, data, err)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			got := f.Counts()
			t.Logf("%s", got)
			if got.Errors == 0 || got.FailedPuts == 0 || got.LostPuts == 0 || got.Latencies == 0 {
				t.Fatalf("some fault never fired: %v", got)
			}
			rate := float64(got.Errors) / float64(got.Calls)
			if rate < 0.1 || rate > 0.3 {
				t.Errorf("error rate %.2f, configured 0.2", rate)
			}
		})
	}
}
