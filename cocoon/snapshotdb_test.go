package cocoon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixtureDB has unknown fields at the top level and in a record, with
// values whose bytes a decode/encode through Go types would change
// (big integers, float spellings, \u escapes, nested objects).
const fixtureDB = `{
  "snapshots": {
    "01JQ8Z6W7X3K4M5N6P7Q8R9S0T": {
      "id": "01JQ8Z6W7X3K4M5N6P7Q8R9S0T",
      "name": "sre-agent",
      "image": "ghcr.io/x/y:1",
      "image_type": "cloudimg",
      "image_blob_ids": {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": {}},
      "hypervisor": "cloud-hypervisor",
      "cpu": 2,
      "memory": 4294967296,
      "storage": 10737418240,
      "nics": 1,
      "created_at": "2026-04-01T10:20:30.123456789+08:00",
      "balloon": {"size": 12345678901234567890, "ratio": 1.50, "exp": 1e3, "s": "caf\u00e9"},
      "tags": ["a", null, true],
      "CPU": 7
    },
    "01JQ8Z6W7X3K4M5N6P7Q8R9S0V": {
      "name": "other",
      "created_at": "2026-04-02T00:00:00Z",
      "pending": true
    }
  },
  "names": {"sre-agent": "01JQ8Z6W7X3K4M5N6P7Q8R9S0T", "other": "01JQ8Z6W7X3K4M5N6P7Q8R9S0V"},
  "version": 3,
  "gc": {"last_run": "2026-01-01T00:00:00Z", "count": 0.0}
}`

const (
	idA = "01JQ8Z6W7X3K4M5N6P7Q8R9S0T"
	idB = "01JQ8Z6W7X3K4M5N6P7Q8R9S0V"
)

// rawFields decodes one JSON object into compacted values by key.
func rawFields(t *testing.T, data []byte) map[string]string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode object: %v\n%s", err, data)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			t.Fatalf("compact %q: %v", k, err)
		}
		out[k] = buf.String()
	}
	return out
}

func TestSnapshotDB_RoundTrip(t *testing.T) {
	var db SnapshotDB
	if err := json.Unmarshal([]byte(fixtureDB), &db); err != nil {
		t.Fatal(err)
	}
	rec := db.Snapshots[idA]
	if rec == nil || rec.Name != "sre-agent" || rec.CPU != 2 || rec.Memory != 4294967296 || rec.NICs != 1 {
		t.Fatalf("known fields not decoded: %+v", rec)
	}
	if _, ok := rec.ImageBlobIDs["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]; !ok {
		t.Errorf("image_blob_ids not decoded: %v", rec.ImageBlobIDs)
	}
	if got := rec.CreatedAt.Format(time.RFC3339Nano); got != "2026-04-01T10:20:30.123456789+08:00" {
		t.Errorf("created_at = %s", got)
	}
	for _, k := range []string{"balloon", "tags", "CPU"} {
		if _, ok := rec.Extra[k]; !ok {
			t.Errorf("record Extra lacks %q: %v", k, rec.Extra)
		}
	}
	if len(db.Extra) != 2 {
		t.Errorf("top-level Extra = %v, want version and gc", db.Extra)
	}

	out, err := json.MarshalIndent(&db, "", "  ")
	if err != nil {
		t.Fatal(err)
	}

	// Every value, known or not, must come back byte-equal once compacted.
	in := []byte(fixtureDB)
	wantTop, gotTop := rawFields(t, in), rawFields(t, out)
	for _, k := range []string{"version", "gc"} {
		if gotTop[k] != wantTop[k] {
			t.Errorf("top-level %q = %s, want %s", k, gotTop[k], wantTop[k])
		}
	}
	// names is a map: Go writes it in key order, so compare it as one.
	if got, want := rawFields(t, []byte(gotTop["names"])), rawFields(t, []byte(wantTop["names"])); !reflect.DeepEqual(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	wantSnaps, gotSnaps := rawFields(t, []byte(wantTop["snapshots"])), rawFields(t, []byte(gotTop["snapshots"]))
	for _, id := range []string{idA, idB} {
		want, got := rawFields(t, []byte(wantSnaps[id])), rawFields(t, []byte(gotSnaps[id]))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("record %s:\n got %v\nwant %v", id, got, want)
		}
	}

	// Encoding is stable: a second round trip gives the same bytes.
	var again SnapshotDB
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatal(err)
	}
	out2, err := json.MarshalIndent(&again, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, out2) {
		t.Errorf("second round trip differs:\n%s\n---\n%s", out, out2)
	}
}

func TestSnapshotRecord_MarshalJSON(t *testing.T) {
	created := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rec  SnapshotRecord
		want string
	}{
		{
			"zero keeps name and created_at",
			SnapshotRecord{},
			`{"name":"","created_at":"0001-01-01T00:00:00Z"}`,
		},
		{"extra after known, sorted", SnapshotRecord{ID: "x", Name: "n", CreatedAt: created, Extra: map[string]json.RawMessage{
			"zeta": json.RawMessage(`1`), "alpha": json.RawMessage(` { "a" : 1 } `),
		}}, `{"id":"x","name":"n","created_at":"2026-04-01T00:00:00Z","alpha":{"a":1},"zeta":1}`},
		{"extra cannot shadow known", SnapshotRecord{Name: "n", CPU: 4, CreatedAt: created, Extra: map[string]json.RawMessage{
			"cpu": json.RawMessage(`99`), "name": json.RawMessage(`"evil"`), "nil": nil,
		}}, `{"name":"n","cpu":4,"created_at":"2026-04-01T00:00:00Z","nil":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// By value too: the marshaler must not depend on addressability.
			for _, v := range []any{tt.rec, &tt.rec} {
				got, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Errorf("got  %s\nwant %s", got, tt.want)
				}
			}
		})
	}
	bad := SnapshotRecord{Extra: map[string]json.RawMessage{"x": json.RawMessage(`{`)}}
	if _, err := json.Marshal(bad); err == nil {
		t.Error("invalid extra value encoded without error")
	}
}

// TestSnapshotRecord_KnownKeys keeps the decoder's key list and the struct
// tags in step: a field added to one but not the other would be dropped or
// written twice.
func TestSnapshotRecord_KnownKeys(t *testing.T) {
	typ := reflect.TypeFor[SnapshotRecord]()
	n := 0
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		n++
		if !isKnownRecordKey(name) {
			t.Errorf("json key %q of field %s is not decoded by field()", name, typ.Field(i).Name)
		}
	}
	if n != 20 {
		t.Errorf("%d known fields, want the 20 of Cocoon's record", n)
	}
}

func TestSnapshotDB_DecodeNulls(t *testing.T) {
	var db SnapshotDB
	if err := json.Unmarshal([]byte(`{"snapshots":null,"names":null}`), &db); err != nil {
		t.Fatal(err)
	}
	if db.Snapshots == nil || db.Names == nil {
		t.Fatal("null maps must decode to empty maps")
	}
	out, err := json.Marshal(SnapshotDB{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"snapshots":{},"names":{}}` {
		t.Errorf("empty db encodes as %s", out)
	}
}

func TestReadSnapshotDB(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string
		wantLen int
		wantErr bool
	}{
		{"missing", nil, 0, false},
		{"empty file", ptr(""), 0, false},
		{"whitespace", ptr(" \n"), 0, false},
		{"fixture", ptr(fixtureDB), 2, false},
		{"corrupt", ptr(`{"snapshots":`), 0, true},
		{"field of another shape is kept", ptr(`{"snapshots":{"x":{"cpu":"two"}}}`), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".json")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			db, err := ReadSnapshotDB(path)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want an error naming %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(db.Snapshots) != tt.wantLen || db.Snapshots == nil || db.Names == nil {
				t.Errorf("got %d snapshots (maps %v/%v), want %d", len(db.Snapshots), db.Snapshots == nil, db.Names == nil, tt.wantLen)
			}
		})
	}
}

func TestWriteSnapshotDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot", "db", "snapshots.json")
	var db SnapshotDB
	if err := json.Unmarshal([]byte(fixtureDB), &db); err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshotDB(path, &db); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", info.Mode().Perm())
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	got, err := ReadSnapshotDB(path)
	if err != nil {
		t.Fatal(err)
	}
	// Compare encodings: DeepEqual would trip on time zones and on the
	// whitespace inside Extra values that the indented file re-indents.
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := json.Marshal(&db)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("read back differs:\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestUpdateSnapshotDB_KeepsOtherRecords(t *testing.T) {
	paths := NewPaths(t.TempDir())
	if err := os.MkdirAll(filepath.Dir(paths.SnapshotDBFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths.SnapshotDBFile, []byte(fixtureDB), 0o644); err != nil {
		t.Fatal(err)
	}
	const idNew = "01JQ8Z6W7X3K4M5N6P7Q8R9S0W"
	err := UpdateSnapshotDB(context.Background(), paths, func(db *SnapshotDB) error {
		db.Snapshots[idNew] = &SnapshotRecord{ID: idNew, Name: "new", CreatedAt: time.Now().UTC()}
		db.Names["new"] = idNew
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths.LockFile()); err != nil {
		t.Errorf("lock file not created: %v", err)
	}
	out, err := os.ReadFile(paths.SnapshotDBFile)
	if err != nil {
		t.Fatal(err)
	}
	wantTop, gotTop := rawFields(t, []byte(fixtureDB)), rawFields(t, out)
	for _, k := range []string{"version", "gc"} {
		if gotTop[k] != wantTop[k] {
			t.Errorf("top-level %q = %s, want %s", k, gotTop[k], wantTop[k])
		}
	}
	wantSnaps, gotSnaps := rawFields(t, []byte(wantTop["snapshots"])), rawFields(t, []byte(gotTop["snapshots"]))
	for _, id := range []string{idA, idB} {
		if !reflect.DeepEqual(rawFields(t, []byte(gotSnaps[id])), rawFields(t, []byte(wantSnaps[id]))) {
			t.Errorf("record %s changed:\n got %s\nwant %s", id, gotSnaps[id], wantSnaps[id])
		}
	}
	if _, ok := gotSnaps[idNew]; !ok {
		t.Error("new record missing")
	}

	// fn failing writes nothing.
	sentinel := errors.New("boom")
	err = UpdateSnapshotDB(context.Background(), paths, func(db *SnapshotDB) error {
		delete(db.Snapshots, idA)
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want wrapped sentinel", err)
	}
	after, err := os.ReadFile(paths.SnapshotDBFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, out) {
		t.Error("DB changed although fn failed")
	}
}

func TestUpdateSnapshotDB_Concurrent(t *testing.T) {
	paths := NewPaths(t.TempDir())
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("snap%02d", i)
			errs <- UpdateSnapshotDB(context.Background(), paths, func(db *SnapshotDB) error {
				db.Snapshots[id] = &SnapshotRecord{ID: id, Name: "name-" + id}
				db.Names["name-"+id] = id
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := LoadSnapshotDB(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Snapshots) != n || len(db.Names) != n {
		t.Fatalf("got %d records and %d names, want %d", len(db.Snapshots), len(db.Names), n)
	}
}

func TestUpdateSnapshotDB_HonoursContextWhileLocked(t *testing.T) {
	paths := NewPaths(t.TempDir())
	if err := os.MkdirAll(filepath.Dir(paths.SnapshotDBFile), 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockFile(context.Background(), paths.LockFile(), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	called := false
	err = UpdateSnapshotDB(ctx, paths, func(*SnapshotDB) error { called = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || called {
		t.Fatalf("err = %v, called = %v; want DeadlineExceeded without calling fn", err, called)
	}
	// A shared lock waits for the exclusive one as well.
	if _, err := LoadSnapshotDB(ctx, paths); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LoadSnapshotDB err = %v, want DeadlineExceeded", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := UpdateSnapshotDB(context.Background(), paths, func(*SnapshotDB) error { return nil }); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

const lockHelperEnv = "EPOCH_COCOON_LOCK_HELPER_ROOT"

// TestLockHelperProcess is not a test: TestUpdateSnapshotDB_CrossProcess runs
// the test binary again with it selected to get a second process.
func TestLockHelperProcess(t *testing.T) {
	root := os.Getenv(lockHelperEnv)
	if root == "" {
		t.Skip("helper process only")
	}
	timeout, _ := time.ParseDuration(os.Getenv("EPOCH_COCOON_LOCK_HELPER_TIMEOUT"))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := UpdateSnapshotDB(ctx, NewPaths(root), func(db *SnapshotDB) error {
		db.Snapshots["child"] = &SnapshotRecord{ID: "child", Name: "child"}
		db.Names["child"] = "child"
		return nil
	})
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, context.DeadlineExceeded):
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func TestUpdateSnapshotDB_CrossProcess(t *testing.T) {
	root := t.TempDir()
	paths := NewPaths(root)
	if err := os.MkdirAll(filepath.Dir(paths.SnapshotDBFile), 0o755); err != nil {
		t.Fatal(err)
	}
	runChild := func(timeout time.Duration) int {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+root, "EPOCH_COCOON_LOCK_HELPER_TIMEOUT="+timeout.String())
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == 1 {
				t.Logf("child output:\n%s", out)
			}
			return exitErr.ExitCode()
		}
		if err != nil {
			t.Fatalf("run child: %v", err)
		}
		return 0
	}

	unlock, err := lockFile(context.Background(), paths.LockFile(), true)
	if err != nil {
		t.Fatal(err)
	}
	if code := runChild(300 * time.Millisecond); code != 3 {
		t.Fatalf("child under held lock exited %d, want 3 (deadline exceeded)", code)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if code := runChild(30 * time.Second); code != 0 {
		t.Fatalf("child after unlock exited %d, want 0", code)
	}
	ok, err := SnapshotExists(paths, "child")
	if err != nil || !ok {
		t.Fatalf("SnapshotExists(child) = %v, %v; want true", ok, err)
	}
}

func TestLoadSnapshotDB_MissingDirCreatesNothing(t *testing.T) {
	root := t.TempDir()
	db, err := LoadSnapshotDB(context.Background(), NewPaths(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Snapshots) != 0 {
		t.Errorf("got %d snapshots, want 0", len(db.Snapshots))
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("LoadSnapshotDB created %v", entries)
	}
}

func TestResolveSnapshotID(t *testing.T) {
	var db SnapshotDB
	if err := json.Unmarshal([]byte(fixtureDB), &db); err != nil {
		t.Fatal(err)
	}
	db.Names["dangling"] = "01JQ8Z6W7X3K4M5N6P7Q8R9S0Z"
	db.Names[idB] = idA // a name that looks like another snapshot's id: names win
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"sre-agent", idA, false},
		{"other", idB, false},
		{idA, idA, false},
		{idB, idA, false},
		{"unknown", "", true},
		{"dangling", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ResolveSnapshotID(&db, tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrSnapshotNotFound) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("ResolveSnapshotID(%q) err = %v, want ErrSnapshotNotFound naming it", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveSnapshotID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSnapshotExists(t *testing.T) {
	paths := NewPaths(t.TempDir())
	if ok, err := SnapshotExists(paths, "sre-agent"); ok || err != nil {
		t.Fatalf("missing DB: got %v, %v; want false, nil", ok, err)
	}
	if err := os.MkdirAll(filepath.Dir(paths.SnapshotDBFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths.SnapshotDBFile, []byte(fixtureDB), 0o644); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]bool{"sre-agent": true, idB: true, "nope": false} {
		if ok, err := SnapshotExists(paths, in); ok != want || err != nil {
			t.Errorf("SnapshotExists(%q) = %v, %v; want %v", in, ok, err, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestSnapshotRecord_ReshapedKnownField: a known field whose JSON shape
// changed (nics as a list) round-trips as it was instead of failing the DB.
func TestSnapshotRecord_ReshapedKnownField(t *testing.T) {
	in := `{"name":"vm","created_at":"2026-04-01T00:00:00Z","nics":[{"mac":"02:00:00:00:00:01"}],"cpu":2}`
	var rec SnapshotRecord
	if err := json.Unmarshal([]byte(in), &rec); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	_ = json.Unmarshal([]byte(in), &a)
	_ = json.Unmarshal(out, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip changed the record:\n in %s\nout %s", in, out)
	}
}
