// Package indextest helps tests that use an index.DB: every database it
// opens is checked with DB.Check before it is closed, as bbolt's own test
// helper does, so any test that leaves the index inconsistent fails.
package indextest

import (
	"path/filepath"
	"testing"

	"github.com/cocoonstack/epoch-dedup/index"
)

// DB wraps an index.DB opened for a test.
type DB struct {
	*index.DB
	tb     testing.TB
	opts   *index.Options
	closed bool
}

// MustOpen opens the index at path (a fresh file in tb.TempDir() when path
// is empty) and registers a cleanup that checks and closes it.
func MustOpen(tb testing.TB, path string, opts *index.Options) *DB {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "index.db")
	}
	idb, err := index.Open(path, opts)
	if err != nil {
		tb.Fatalf("open index: %v", err)
	}
	db := &DB{DB: idb, tb: tb, opts: opts}
	tb.Cleanup(func() {
		if !db.closed {
			db.MustClose()
		}
	})
	return db
}

// MustCheck fails the test if DB.Check reports a problem.
func (db *DB) MustCheck() {
	db.tb.Helper()
	if err := db.Check(); err != nil {
		db.tb.Fatalf("index check: %v", err)
	}
}

// MustClose checks and closes the database.
func (db *DB) MustClose() {
	db.tb.Helper()
	db.MustCheck()
	db.closed = true
	if err := db.Close(); err != nil {
		db.tb.Fatalf("close index: %v", err)
	}
}

// MustReopen checks and closes the database and opens it again.
func (db *DB) MustReopen() *DB {
	db.tb.Helper()
	db.MustClose()
	return MustOpen(db.tb, db.Path(), db.opts)
}
