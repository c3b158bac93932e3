package cocoon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	// ImageTypeOCI marks a snapshot whose disk came from an OCI image.
	ImageTypeOCI = "oci"
	// ImageTypeCloudimg marks a snapshot whose qcow2 overlay sits on a base
	// image in <root>/cloudimg/blobs.
	ImageTypeCloudimg = "cloudimg"
	// HypervisorCloudHypervisor is the Cloud Hypervisor backend.
	HypervisorCloudHypervisor = "cloud-hypervisor"
	// HypervisorFirecracker is the Firecracker backend.
	HypervisorFirecracker = "firecracker"

	dbFileMode = 0o644
	dbDirMode  = 0o755
)

// ErrSnapshotNotFound is returned (wrapped, with what was asked) when a name
// or ID resolves to no record.
var ErrSnapshotNotFound = errors.New("snapshot not found")

// SnapshotDB is Cocoon's snapshots.json. Extra keeps top-level fields this
// package does not know, so writing the DB back never loses them.
type SnapshotDB struct {
	// Snapshots maps snapshot ID to record.
	Snapshots map[string]*SnapshotRecord `json:"snapshots"`
	// Names maps snapshot name to ID.
	Names map[string]string `json:"names"`
	// Extra holds unknown top-level fields verbatim; written after the known
	// ones in key order.
	Extra map[string]json.RawMessage `json:"-"`
}

// SnapshotRecord is one entry of SnapshotDB.Snapshots. Extra keeps fields
// this package does not know, verbatim, because Cocoon keeps adding fields.
type SnapshotRecord struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"`
	// ImageType is ImageTypeOCI or ImageTypeCloudimg.
	ImageType string `json:"image_type,omitempty"`
	// ImageBlobIDs is the set of base image digests (hex) the disks need,
	// each at CloudimgBlobPath on the node that clones the snapshot.
	ImageBlobIDs map[string]struct{} `json:"image_blob_ids,omitempty"`
	// Hypervisor is HypervisorCloudHypervisor or HypervisorFirecracker.
	Hypervisor    string    `json:"hypervisor,omitempty"`
	CPU           int       `json:"cpu,omitempty"`
	Memory        int64     `json:"memory,omitempty"`
	Storage       int64     `json:"storage,omitempty"`
	QueueSize     int       `json:"queue_size,omitempty"`
	DiskQueueSize int       `json:"disk_queue_size,omitempty"`
	Network       string    `json:"network,omitempty"`
	NoDirectIO    bool      `json:"no_direct_io,omitempty"`
	Windows       bool      `json:"windows,omitempty"`
	NICs          int       `json:"nics,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// Pending is set by Cocoon while a snapshot is being taken.
	Pending bool `json:"pending,omitempty"`
	// DataDir overrides the snapshot's directory when Cocoon set one.
	DataDir string `json:"data_dir,omitempty"`

	// Extra holds unknown fields verbatim; written after the known ones in
	// key order.
	Extra map[string]json.RawMessage `json:"-"`
}

// snapshotRecordJSON and snapshotDBJSON drop the methods so the default
// encoder handles the known fields.
type (
	snapshotRecordJSON SnapshotRecord
	snapshotDBJSON     SnapshotDB
)

// MarshalJSON writes the known fields in struct order, then Extra in key
// order, skipping Extra keys that name a known field.
func (r SnapshotRecord) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(snapshotRecordJSON(r))
	if err != nil {
		return nil, fmt.Errorf("encode snapshot record %s: %w", r.ID, err)
	}
	// A known key stays in Extra only when its field is empty: that is a
	// value of a shape this code did not expect (see UnmarshalJSON), kept
	// as it was rather than lost.
	var written map[string]json.RawMessage
	if err := json.Unmarshal(base, &written); err != nil {
		return nil, fmt.Errorf("encode snapshot record %s: %w", r.ID, err)
	}
	return appendExtra(base, r.Extra, func(k string) bool {
		_, ok := written[k]
		return ok
	})
}

// UnmarshalJSON decodes known fields by exact key (encoding/json would match
// them case-insensitively and so swallow an unknown "CPU" into cpu) and keeps
// everything else in Extra.
func (r *SnapshotRecord) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("decode snapshot record: %w", err)
	}
	var rec SnapshotRecord
	for key, raw := range fields {
		target := rec.field(key)
		if target == nil {
			if rec.Extra == nil {
				rec.Extra = make(map[string]json.RawMessage)
			}
			rec.Extra[key] = raw
			continue
		}
		if err := json.Unmarshal(raw, target); err != nil {
			// Cocoon changed the field's shape (say, nics from a count to a
			// list): keep the value as it is instead of failing the whole DB.
			if rec.Extra == nil {
				rec.Extra = make(map[string]json.RawMessage)
			}
			rec.Extra[key] = raw
		}
	}
	*r = rec
	return nil
}

// MarshalJSON writes snapshots and names (as {} when nil: Cocoon writes into
// these maps after reading and would panic on null), then Extra in key order.
func (db SnapshotDB) MarshalJSON() ([]byte, error) {
	if db.Snapshots == nil {
		db.Snapshots = map[string]*SnapshotRecord{}
	}
	if db.Names == nil {
		db.Names = map[string]string{}
	}
	base, err := json.Marshal(snapshotDBJSON(db))
	if err != nil {
		return nil, fmt.Errorf("encode snapshot db: %w", err)
	}
	return appendExtra(base, db.Extra, isKnownDBKey)
}

// UnmarshalJSON decodes snapshots and names by exact key and keeps every
// other top-level field in Extra.
func (db *SnapshotDB) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("decode snapshot db: %w", err)
	}
	out := SnapshotDB{
		Snapshots: map[string]*SnapshotRecord{},
		Names:     map[string]string{},
	}
	for key, raw := range fields {
		var err error
		switch key {
		case "snapshots":
			err = json.Unmarshal(raw, &out.Snapshots)
		case "names":
			err = json.Unmarshal(raw, &out.Names)
		default:
			if out.Extra == nil {
				out.Extra = make(map[string]json.RawMessage)
			}
			out.Extra[key] = raw
		}
		if err != nil {
			return fmt.Errorf("decode snapshot db field %q: %w", key, err)
		}
	}
	// "snapshots": null decodes to a nil map; callers add to it.
	if out.Snapshots == nil {
		out.Snapshots = map[string]*SnapshotRecord{}
	}
	if out.Names == nil {
		out.Names = map[string]string{}
	}
	*db = out
	return nil
}

// ReadSnapshotDB reads the DB at path without locking. A missing or empty
// file is an empty DB: Cocoon creates the file on its first snapshot.
// Reading without the lock is consistent because every writer replaces the
// file by rename; use LoadSnapshotDB or UpdateSnapshotDB to order against writers.
func ReadSnapshotDB(path string) (*SnapshotDB, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newSnapshotDB(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot db %s: %w", path, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return newSnapshotDB(), nil
	}
	db := newSnapshotDB()
	if err := json.Unmarshal(data, db); err != nil {
		return nil, fmt.Errorf("read snapshot db %s: %w", path, err)
	}
	return db, nil
}

// WriteSnapshotDB replaces the DB at path atomically: a temp file in the
// same directory, fsync, rename, fsync of the directory; mode 0644. It does
// not lock: use UpdateSnapshotDB unless you already hold the lock.
func WriteSnapshotDB(path string, db *SnapshotDB) error {
	if db == nil {
		return fmt.Errorf("write snapshot db %s: nil db", path)
	}
	data, err := json.MarshalIndent(db, "", "  ")
	if err != nil {
		return fmt.Errorf("write snapshot db %s: %w", path, err)
	}
	data = append(data, '\n')
	if err := writeFileAtomic(path, data, dbFileMode); err != nil {
		return fmt.Errorf("write snapshot db %s: %w", path, err)
	}
	return nil
}

// UpdateSnapshotDB is the read-modify-write callers should use. It takes an
// exclusive flock on paths.LockFile() (creating it like Cocoon does), waiting
// until ctx is done, reads the DB, calls fn and, if fn returns nil and ctx is
// still live, writes the DB back atomically. fn's error is returned wrapped;
// nothing is written then. fn must not call back into this package's locking
// functions: flock is not reentrant across descriptors and would deadlock.
func UpdateSnapshotDB(ctx context.Context, paths *Paths, fn func(db *SnapshotDB) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(paths.SnapshotDBFile), dbDirMode); err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	unlock, err := lockFile(ctx, paths.LockFile(), true)
	if err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	defer func() {
		if uerr := unlock(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("update snapshot db: %w", uerr))
		}
	}()
	db, err := ReadSnapshotDB(paths.SnapshotDBFile)
	if err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	if err := fn(db); err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	// The caller gave up while fn ran: leave the DB as it was.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	if err := WriteSnapshotDB(paths.SnapshotDBFile, db); err != nil {
		return fmt.Errorf("update snapshot db: %w", err)
	}
	return nil
}

// LoadSnapshotDB reads the DB under a shared flock, waiting until ctx is
// done. A missing DB directory means an empty DB; nothing is created then.
func LoadSnapshotDB(ctx context.Context, paths *Paths) (db *SnapshotDB, err error) {
	if _, err := os.Stat(filepath.Dir(paths.SnapshotDBFile)); errors.Is(err, fs.ErrNotExist) {
		return newSnapshotDB(), nil
	}
	unlock, err := lockFile(ctx, paths.LockFile(), false)
	if err != nil {
		return nil, fmt.Errorf("load snapshot db: %w", err)
	}
	defer func() {
		if uerr := unlock(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("load snapshot db: %w", uerr))
		}
	}()
	db, err = ReadSnapshotDB(paths.SnapshotDBFile)
	if err != nil {
		return nil, fmt.Errorf("load snapshot db: %w", err)
	}
	return db, nil
}

// ResolveSnapshotID returns the ID for nameOrID: a name in db.Names first
// (Cocoon's CLI resolves names before IDs), else an ID in db.Snapshots. A
// name whose ID has no record counts as not found. Errors wrap
// ErrSnapshotNotFound and name what was asked.
func ResolveSnapshotID(db *SnapshotDB, nameOrID string) (string, error) {
	if db == nil {
		return "", fmt.Errorf("%w: %q", ErrSnapshotNotFound, nameOrID)
	}
	if id, ok := db.Names[nameOrID]; ok {
		if db.Snapshots[id] == nil {
			return "", fmt.Errorf("%w: name %q points to id %q, which has no record", ErrSnapshotNotFound, nameOrID, id)
		}
		return id, nil
	}
	if db.Snapshots[nameOrID] != nil {
		return nameOrID, nil
	}
	return "", fmt.Errorf("%w: %q", ErrSnapshotNotFound, nameOrID)
}

// SnapshotExists reports whether nameOrID resolves to a record, pending or
// not (check SnapshotRecord.Pending when completeness matters). It reads
// without the lock, which is consistent because the DB is only ever replaced
// by rename, and so needs no ctx.
func SnapshotExists(paths *Paths, nameOrID string) (bool, error) {
	db, err := ReadSnapshotDB(paths.SnapshotDBFile)
	if err != nil {
		return false, fmt.Errorf("snapshot exists %s: %w", nameOrID, err)
	}
	if _, err := ResolveSnapshotID(db, nameOrID); err != nil {
		if errors.Is(err, ErrSnapshotNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("snapshot exists %s: %w", nameOrID, err)
	}
	return true, nil
}

// field returns a pointer to the known field with JSON key key, or nil. It is
// the one list of known keys; a test checks it against the struct tags.
func (r *SnapshotRecord) field(key string) any {
	switch key {
	case "id":
		return &r.ID
	case "name":
		return &r.Name
	case "description":
		return &r.Description
	case "image":
		return &r.Image
	case "image_digest":
		return &r.ImageDigest
	case "image_type":
		return &r.ImageType
	case "image_blob_ids":
		return &r.ImageBlobIDs
	case "hypervisor":
		return &r.Hypervisor
	case "cpu":
		return &r.CPU
	case "memory":
		return &r.Memory
	case "storage":
		return &r.Storage
	case "queue_size":
		return &r.QueueSize
	case "disk_queue_size":
		return &r.DiskQueueSize
	case "network":
		return &r.Network
	case "no_direct_io":
		return &r.NoDirectIO
	case "windows":
		return &r.Windows
	case "nics":
		return &r.NICs
	case "created_at":
		return &r.CreatedAt
	case "pending":
		return &r.Pending
	case "data_dir":
		return &r.DataDir
	}
	return nil
}

func isKnownRecordKey(key string) bool {
	var r SnapshotRecord
	return r.field(key) != nil
}

func isKnownDBKey(key string) bool {
	return key == "snapshots" || key == "names"
}

func newSnapshotDB() *SnapshotDB {
	return &SnapshotDB{
		Snapshots: map[string]*SnapshotRecord{},
		Names:     map[string]string{},
	}
}

// appendExtra appends extra's fields, in key order, to the JSON object base.
// Keys the known fields own are skipped so the output never holds a key twice.
func appendExtra(base []byte, extra map[string]json.RawMessage, known func(string) bool) ([]byte, error) {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !known(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return base, nil
	}
	slices.Sort(keys)
	if len(base) < 2 || base[len(base)-1] != '}' {
		return nil, fmt.Errorf("encode extra fields: base is not a json object")
	}
	out := bytes.NewBuffer(make([]byte, 0, len(base)+64*len(keys)))
	out.Write(base[:len(base)-1])
	first := bytes.Equal(bytes.TrimSpace(base), []byte("{}"))
	for _, k := range keys {
		if !first {
			out.WriteByte(',')
		}
		first = false
		name, err := json.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("encode extra field %q: %w", k, err)
		}
		out.Write(name)
		out.WriteByte(':')
		raw := extra[k]
		if len(raw) == 0 {
			// A nil RawMessage is what json.Marshal writes as null.
			raw = json.RawMessage("null")
		}
		// Compact validates the value and keeps its bytes (numbers, escapes)
		// as they were, apart from insignificant whitespace.
		if err := json.Compact(out, raw); err != nil {
			return nil, fmt.Errorf("encode extra field %q: %w", k, err)
		}
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// writeFileAtomic writes data to a temp file beside path, fsyncs it, renames
// it over path and fsyncs the directory, so a crash leaves the old file or
// the new one, never a mix.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dbDirMode); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	// CreateTemp makes 0600 files; Cocoon's DB is world-readable.
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory so a rename or create in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return d.Close()
}
