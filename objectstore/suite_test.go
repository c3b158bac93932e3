package objectstore_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/objectstore/objectstoretest"
)

// TestSuite runs the conformance suite against every configured backend:
// the local folder always, S3 when EPOCH_TEST_S3_ENDPOINT is set.
func TestSuite(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c *objectstore.Client)
	}{
		{"PutGetStat", testPutGetStat},
		{"EmptyObject", testEmptyObject},
		{"RangedGet", testRangedGet},
		{"Missing", testMissing},
		{"OverwriteChangesETag", testOverwrite},
		{"ListOrder", testListOrder},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"GetBytesLimit", testGetBytesLimit},
		{"CreateOnlyOneWinner", testCreateOnlyRace},
		{"IfMatchCounter", testIfMatchCounter},
		{"IfMatchFailures", testIfMatchFailures},
		{"LargeObject", testLargeObject},
		{"LargeCreateOnly", testLargeCreateOnly},
		{"Stats", testStats},
		{"FileBody", testFileBody},
		{"SpoolBody", testSpoolBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for name, c := range objectstoretest.Stores(t) {
				t.Run(name, func(t *testing.T) { tt.fn(t, c) })
			}
		})
	}
}

func put(t *testing.T, c *objectstore.Client, key, data string) objectstore.ObjectInfo {
	t.Helper()
	info, err := c.PutBytes(t.Context(), key, []byte(data), objectstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func read(t *testing.T, c *objectstore.Client, key string, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := c.Get(t.Context(), key, off, n)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	return io.ReadAll(rc)
}

func testPutGetStat(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	pi := put(t, c, "dir/sub/obj", "hello world")
	if pi.Key != "dir/sub/obj" || pi.Size != 11 || pi.ETag == "" {
		t.Errorf("put info = %+v", pi)
	}
	got, err := read(t, c, "dir/sub/obj", 0, -1)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("get = %q, %v", got, err)
	}
	si, err := c.Stat(ctx, "dir/sub/obj")
	if err != nil {
		t.Fatal(err)
	}
	if si.Key != "dir/sub/obj" || si.Size != 11 || si.ETag != pi.ETag {
		t.Errorf("stat = %+v, put = %+v", si, pi)
	}
	data, gi, err := c.GetBytes(ctx, "dir/sub/obj", 11)
	if err != nil || string(data) != "hello world" {
		t.Fatalf("getbytes = %q, %v", data, err)
	}
	if gi.ETag != pi.ETag || gi.Size != 11 || gi.Key != "dir/sub/obj" {
		t.Errorf("getbytes info = %+v, put = %+v", gi, pi)
	}
	// A directory-like prefix of a key is not an object.
	if _, err := c.Stat(ctx, "dir/sub"); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("stat of a key prefix: %v, want ErrNotFound", err)
	}
}

func testEmptyObject(t *testing.T, c *objectstore.Client) {
	put(t, c, "empty", "")
	got, err := read(t, c, "empty", 0, -1)
	if err != nil || len(got) != 0 {
		t.Fatalf("get = %q, %v", got, err)
	}
	data, info, err := c.GetBytes(t.Context(), "empty", 0)
	if err != nil || len(data) != 0 || info.Size != 0 {
		t.Fatalf("getbytes = %q, %+v, %v", data, info, err)
	}
}

func testRangedGet(t *testing.T, c *objectstore.Client) {
	put(t, c, "r", "0123456789")
	for _, tc := range []struct {
		off, n  int64
		want    string
		wantErr error
	}{
		{0, -1, "0123456789", nil},
		{0, 10, "0123456789", nil},
		{3, 4, "3456", nil},
		{3, -1, "3456789", nil},
		{9, 1, "9", nil},
		{10, -1, "", nil},
		{10, 0, "", nil},
		{5, 0, "", nil},
		{11, -1, "", objectstore.ErrInvalidRange},
		{11, 0, "", objectstore.ErrInvalidRange},
		{8, 5, "", objectstore.ErrInvalidRange},
		{10, 1, "", objectstore.ErrInvalidRange},
		{-1, 2, "", objectstore.ErrInvalidRange},
	} {
		got, err := read(t, c, "r", tc.off, tc.n)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("get(%d, %d) = %q, %v; want %v", tc.off, tc.n, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("get(%d, %d) = %q, %v; want %q", tc.off, tc.n, got, err, tc.want)
		}
	}
}

func testMissing(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	if _, err := c.Get(ctx, "nope/x", 0, -1); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if _, err := c.Get(ctx, "nope/x", 2, 3); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("ranged get: %v", err)
	}
	if _, err := c.Stat(ctx, "nope/x"); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("stat: %v", err)
	}
	if _, _, err := c.GetBytes(ctx, "nope/x", 100); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("getbytes: %v", err)
	}
	if err := c.Delete(ctx, "nope/x"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
	n := 0
	if err := c.List(ctx, "nope/", func(objectstore.ObjectInfo) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("list of an empty prefix: %d keys, %v", n, err)
	}
}

func testOverwrite(t *testing.T, c *objectstore.Client) {
	a := put(t, c, "o", "same-size-1")
	b := put(t, c, "o", "same-size-2")
	if a.ETag == b.ETag {
		t.Errorf("etag unchanged after overwrite: %q", a.ETag)
	}
	got, _ := read(t, c, "o", 0, -1)
	if string(got) != "same-size-2" {
		t.Errorf("get = %q", got)
	}
}

func testListOrder(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	// "a.txt" < "a/b" < "a0" byte-wise, although a directory walk would
	// visit "a/" before "a.txt".
	keys := []string{"b", "a0", "a/b", "a.txt", "a/c/d", "a-", "ab/x"}
	for _, k := range keys {
		put(t, c, k, k)
	}
	list := func(prefix string) []string {
		var got []string
		if err := c.List(ctx, prefix, func(info objectstore.ObjectInfo) error {
			if info.Size != int64(len(info.Key)) {
				t.Errorf("list %s: size %d", info.Key, info.Size)
			}
			got = append(got, info.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-", "a.txt", "a/b", "a/c/d", "a0", "ab/x", "b"}},
		{"a/", []string{"a/b", "a/c/d"}},
		{"a", []string{"a-", "a.txt", "a/b", "a/c/d", "a0", "ab/x"}},
		{"a/c", []string{"a/c/d"}},
		{"ab/", []string{"ab/x"}},
		{"zz", nil},
	} {
		if got := list(tc.prefix); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("list(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := c.List(ctx, "", func(objectstore.ObjectInfo) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 { //nolint:errorlint // the callback's own error comes back unwrapped
		t.Errorf("stopped list: n=%d err=%v", n, err)
	}
	if err := c.List(ctx, "../x", func(objectstore.ObjectInfo) error { return nil }); !errors.Is(err, objectstore.ErrInvalidKey) {
		t.Errorf("list ../x: %v", err)
	}
}

func testDelete(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	put(t, c, "d/x", "1")
	put(t, c, "d/y", "2")
	if err := c.Delete(ctx, "d/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "d/x"); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("stat after delete: %v", err)
	}
	var got []string
	_ = c.List(ctx, "", func(info objectstore.ObjectInfo) error { got = append(got, info.Key); return nil })
	if fmt.Sprint(got) != "[d/y]" {
		t.Errorf("list after delete = %q", got)
	}
	// Deleting a key that was CAS-written (the local store's lock file)
	// leaves nothing behind and allows a create-only write again.
	info := put(t, c, "d/z", "1")
	if _, err := c.PutBytes(ctx, "d/z", []byte("2"), objectstore.PutOptions{IfMatch: info.ETag}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "d/z"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBytes(ctx, "d/z", []byte("3"), objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Errorf("create after delete: %v", err)
	}
}

func testInvalidKeys(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	for _, k := range []string{"", "/a", "a/../b", "..", "../a", "a/..", ".", "./a", "a//b", "a/", `a\b`, "a\x00b"} {
		if _, err := c.PutBytes(ctx, k, []byte("x"), objectstore.PutOptions{}); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
		}
		if _, err := c.Get(ctx, k, 0, -1); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("get %q: %v, want ErrInvalidKey", k, err)
		}
		if _, err := c.Stat(ctx, k); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("stat %q: %v, want ErrInvalidKey", k, err)
		}
		if err := c.Delete(ctx, k); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("delete %q: %v, want ErrInvalidKey", k, err)
		}
	}
	// Nothing was written anywhere.
	n := 0
	_ = c.List(ctx, "", func(objectstore.ObjectInfo) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d objects after invalid writes", n)
	}
}

func testGetBytesLimit(t *testing.T, c *objectstore.Client) {
	put(t, c, "big", "0123456789")
	if _, _, err := c.GetBytes(t.Context(), "big", 9); err == nil {
		t.Error("getbytes over the limit succeeded")
	}
	if data, _, err := c.GetBytes(t.Context(), "big", 10); err != nil || len(data) != 10 {
		t.Errorf("getbytes at the limit = %d bytes, %v", len(data), err)
	}
}

func testCreateOnlyRace(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	const n = 16
	var wins, lost atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := "writer-" + strconv.Itoa(i)
			_, err := c.PutBytes(ctx, "race/config.json", []byte(body), objectstore.PutOptions{IfNoneMatch: true})
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(body)
			case errors.Is(err, objectstore.ErrPreconditionFailed):
				lost.Add(1)
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || lost.Load() != n-1 {
		t.Fatalf("wins=%d lost=%d, want 1 and %d", wins.Load(), lost.Load(), n-1)
	}
	got, _ := read(t, c, "race/config.json", 0, -1)
	if string(got) != winner.Load() {
		t.Errorf("stored %q, winner wrote %q", got, winner.Load())
	}
}

// testIfMatchCounter increments a counter object from 16 goroutines with
// If-Match compare-and-swap; every increment must survive.
func testIfMatchCounter(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	const n = 16
	if _, err := c.PutBytes(ctx, "counter", []byte("0"), objectstore.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatal(err)
	}
	var conflicts atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				data, info, err := c.GetBytes(ctx, "counter", 64)
				if err != nil {
					t.Error(err)
					return
				}
				v, err := strconv.Atoi(string(data))
				if err != nil {
					t.Error(err)
					return
				}
				_, err = c.PutBytes(ctx, "counter", []byte(strconv.Itoa(v+1)), objectstore.PutOptions{IfMatch: info.ETag})
				if err == nil {
					return
				}
				if !errors.Is(err, objectstore.ErrPreconditionFailed) {
					t.Error(err)
					return
				}
				conflicts.Add(1)
			}
		})
	}
	wg.Wait()
	got, _ := read(t, c, "counter", 0, -1)
	if string(got) != strconv.Itoa(n) {
		t.Errorf("counter = %s, want %d", got, n)
	}
	t.Logf("%d conflicts", conflicts.Load())
}

func testIfMatchFailures(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	if _, err := c.PutBytes(ctx, "cas/missing", []byte("x"), objectstore.PutOptions{IfMatch: "abc"}); !errors.Is(err, objectstore.ErrPreconditionFailed) {
		t.Errorf("if-match on a missing key: %v", err)
	}
	old := put(t, c, "cas/k", "v1")
	cur := put(t, c, "cas/k", "v2")
	if _, err := c.PutBytes(ctx, "cas/k", []byte("v3"), objectstore.PutOptions{IfMatch: old.ETag}); !errors.Is(err, objectstore.ErrPreconditionFailed) {
		t.Errorf("if-match with a stale etag: %v", err)
	}
	if _, err := c.PutBytes(ctx, "cas/k", []byte("v3"), objectstore.PutOptions{IfNoneMatch: true}); !errors.Is(err, objectstore.ErrPreconditionFailed) {
		t.Errorf("create-only over an existing key: %v", err)
	}
	if got, _ := read(t, c, "cas/k", 0, -1); string(got) != "v2" {
		t.Errorf("failed writes changed the object to %q", got)
	}
	if _, err := c.PutBytes(ctx, "cas/k", []byte("v3"), objectstore.PutOptions{IfMatch: cur.ETag}); err != nil {
		t.Errorf("if-match with the current etag: %v", err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testLargeObject crosses minio's 16 MiB multipart threshold.
func testLargeObject(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	data := randomBytes(t, 20<<20+123)
	info, err := c.Put(ctx, "large/obj", bytes.NewReader(data), int64(len(data)), objectstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("size %d", info.Size)
	}
	t.Logf("etag %s", info.ETag) // "<md5>-2" on S3: went multipart
	got, gi, err := c.GetBytes(ctx, "large/obj", int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("large object round trip differs")
	}
	if si, _ := c.Stat(ctx, "large/obj"); si.ETag != gi.ETag || si.Size != int64(len(data)) {
		t.Errorf("stat %+v, getbytes %+v", si, gi)
	}
	// A range across the 16 MiB part boundary.
	off := int64(16<<20 - 1000)
	part, err := read(t, c, "large/obj", off, 5000)
	if err != nil || !bytes.Equal(part, data[off:off+5000]) {
		t.Errorf("ranged read across the part boundary: %d bytes, %v", len(part), err)
	}
}

// testLargeCreateOnly: create-only writes above the multipart threshold
// must keep their condition (minio's multipart path would drop it).
func testLargeCreateOnly(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	data := randomBytes(t, 17<<20)
	opts := objectstore.PutOptions{IfNoneMatch: true}
	if _, err := c.Put(ctx, "large/pack", bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatal(err)
	}
	other := randomBytes(t, 17<<20)
	if _, err := c.Put(ctx, "large/pack", bytes.NewReader(other), int64(len(other)), opts); !errors.Is(err, objectstore.ErrPreconditionFailed) {
		t.Fatalf("second create-only write: %v", err)
	}
	got, _, err := c.GetBytes(ctx, "large/pack", int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("large create-only object was replaced (%v)", err)
	}
}

func testStats(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	before := c.Stats()
	put(t, c, "s", "12345")
	if _, err := read(t, c, "s", 1, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	d := objectstore.Stats{
		PutRequests:   after.PutRequests - before.PutRequests,
		GetRequests:   after.GetRequests - before.GetRequests,
		OtherRequests: after.OtherRequests - before.OtherRequests,
		BytesUp:       after.BytesUp - before.BytesUp,
		BytesDown:     after.BytesDown - before.BytesDown,
	}
	want := objectstore.Stats{PutRequests: 1, GetRequests: 1, OtherRequests: 1, BytesUp: 5, BytesDown: 3}
	if d != want {
		t.Errorf("stats delta = %+v, want %+v", d, want)
	}
	if s := c.String(); s == "" || bytes.Contains([]byte(s), []byte("secret")) {
		t.Errorf("String() = %q", s)
	}
}

// TestStoresS3 documents whether the S3 half of the suite ran.
func TestStoresS3(t *testing.T) {
	if _, ok := objectstoretest.S3Config(t); !ok {
		t.Skip("EPOCH_TEST_S3_ENDPOINT not set: S3 backend not tested (eval \"$(scripts/s3-server.sh start)\")")
	}
	c := objectstoretest.S3(t)
	t.Log(c)
}

// testFileBody: a body that is a file (a spooled pack) is stored from its
// start whatever its offset; a file shorter than size is refused and stores
// nothing.
func testFileBody(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	data := randomBytes(t, 17<<20+5)
	f, err := os.CreateTemp(t.TempDir(), "body-*")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Write(data); err != nil { // leaves the offset at the end
		t.Fatal(err)
	}
	opts := objectstore.PutOptions{IfNoneMatch: true}
	if _, err := c.Put(ctx, "file/whole", f, int64(len(data)), opts); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.GetBytes(ctx, "file/whole", int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file body round trip: %d bytes, %v", len(got), err)
	}
	size := int64(len(data)) + 1
	if _, err := c.Put(ctx, "file/short", f, size, opts); err == nil {
		t.Errorf("file of %d bytes stored as %d", len(data), size)
	}
	if _, err := c.Stat(ctx, "file/short"); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("refused put left an object: %v", err)
	}
}

// testSpoolBody: a spool handed over is stored whole (the folder store
// links it into place) and stays when the spool is closed; a create-only
// put of an existing key changes nothing; a spool shorter than size is
// refused and stores nothing. The spool itself never has a name in its
// folder.
func testSpoolBody(t *testing.T, c *objectstore.Client) {
	ctx := t.Context()
	dir := t.TempDir()
	newSpool := func(data []byte) *objectstore.Spool {
		sp, err := objectstore.NewSpool(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Write(data); err != nil {
			t.Fatal(err)
		}
		return sp
	}
	data := randomBytes(t, 3<<20+1)
	sp := newSpool(data)
	opts := objectstore.PutOptions{IfNoneMatch: true}
	if _, err := c.Put(ctx, "spool/a", sp, int64(len(data)), opts); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		got, _, err := c.GetBytes(ctx, "spool/a", int64(len(data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, %v", what, len(got), err)
		}
	}
	check("spool round trip")
	other := newSpool(randomBytes(t, 100))
	defer func() { _ = other.Close() }()
	if _, err := c.Put(ctx, "spool/a", other, 100, opts); !errors.Is(err, objectstore.ErrPreconditionFailed) {
		t.Errorf("create-only put over an object: %v", err)
	}
	check("after a refused put")
	if _, err := c.Put(ctx, "spool/short", other, 101, opts); err == nil {
		t.Error("spool of 100 bytes stored as 101")
	}
	if _, err := c.Stat(ctx, "spool/short"); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("refused put left an object: %v", err)
	}
	if names, err := os.ReadDir(dir); err != nil || len(names) != 0 {
		t.Errorf("spool folder holds %d names (%v)", len(names), err)
	}
}
