// Package objectstoretest gives tests fresh object stores: always a local
// folder, and an S3 store when EPOCH_TEST_S3_ENDPOINT is set (see
// scripts/s3-server.sh).
package objectstoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// Environment variables naming the test S3 server.
const (
	EnvEndpoint  = "EPOCH_TEST_S3_ENDPOINT"
	EnvAccessKey = "EPOCH_TEST_S3_ACCESS_KEY"
	EnvSecretKey = "EPOCH_TEST_S3_SECRET_KEY" //nolint:gosec // a variable name, not a credential
	EnvBucket    = "EPOCH_TEST_S3_BUCKET"
)

// S3Config returns a config for the test S3 server with a fresh random
// prefix, and false when EPOCH_TEST_S3_ENDPOINT is unset. With the
// endpoint set, missing credentials or bucket fail the test rather than
// skip it: CI always sets them.
func S3Config(t testing.TB) (*objectstore.Config, bool) {
	t.Helper()
	if os.Getenv(EnvEndpoint) == "" {
		return nil, false
	}
	cfg, err := objectstore.ConfigFromEnv("EPOCH_TEST_S3")
	if err != nil {
		t.Fatalf("test S3 config: %v", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	cfg.Prefix = "test-" + hex.EncodeToString(b[:]) + "/"
	return cfg, true
}

// Stores returns fresh, empty stores keyed by backend: "local" always, in
// t.TempDir(), and "s3" when the test S3 server is configured, under a
// random prefix that is emptied when the test ends (best effort).
func Stores(t testing.TB) map[string]*objectstore.Client {
	t.Helper()
	local, err := objectstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatalf("local store: %v", err)
	}
	stores := map[string]*objectstore.Client{"local": local}
	if c := S3(t); c != nil {
		stores["s3"] = c
	}
	return stores
}

// S3 returns a fresh S3 store (see Stores), or nil when the test S3 server
// is not configured.
func S3(t testing.TB) *objectstore.Client {
	t.Helper()
	cfg, ok := S3Config(t)
	if !ok {
		return nil
	}
	c, err := objectstore.New(cfg, objectstore.WithBackoff(20*time.Millisecond, time.Second))
	if err != nil {
		t.Fatalf("s3 store: %v", err)
	}
	t.Cleanup(func() { Empty(t, c) })
	return c
}

// Empty deletes every object of c, reporting failures with t.Logf only.
func Empty(t testing.TB, c *objectstore.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	if err := c.List(ctx, "", func(info objectstore.ObjectInfo) error {
		keys = append(keys, info.Key)
		return nil
	}); err != nil {
		t.Logf("clean up %s: %v", c, err)
		return
	}
	for _, k := range keys {
		if err := c.Delete(ctx, k); err != nil {
			t.Logf("clean up %s: %v", c, err)
		}
	}
}
