// Package cocoon knows Cocoon's on-disk layout and its snapshot database, and
// reads and writes them safely while a Cocoon runs on the same host.
//
// It knows nothing of buckets, manifests or chunks: push reads a snapshot
// through [SnapshotFiles], pull stages files in [NewStagingDir], installs them
// with [InstallSnapshotDir] and then records them with [UpdateSnapshotDB].
//
// # Basics
//
// The layout under the root (default [DefaultRootDir], env COCOON_ROOT_DIR):
//
//	snapshot/db/snapshots.json      the snapshot DB: {"snapshots": {id: record}, "names": {name: id}}
//	snapshot/db/snapshots.lock      flock(2) lock guarding every read-modify-write of the DB
//	snapshot/localfile/<id>/        one snapshot's files (config.json, state.json, memory-ranges, ...)
//	cloudimg/blobs/<sha256>.qcow2   base images that qcow2 overlays reference by absolute path
//
// Every change to the DB goes through [UpdateSnapshotDB]: it takes the same
// exclusive flock Cocoon takes, re-reads the DB under the lock, applies the
// caller's change and replaces the file atomically (temp file, fsync,
// rename, fsync of the directory). Records keep every field this package
// does not know ([SnapshotRecord.Extra], [SnapshotDB.Extra]), because Cocoon
// keeps adding fields and a writer that drops them corrupts Cocoon's state.
//
// A pulled snapshot becomes visible in two steps, data first: the directory
// is renamed into place by [InstallSnapshotDir], and only then is the record
// added, so Cocoon never sees a record whose files are missing or partial.
//
// # Caveats
//
//   - flock locks belong to an open file description: each call opens its
//     own descriptor, so goroutines of one process exclude each other too.
//     The lock is advisory; it protects only against writers that take it.
//   - Staging directories live inside snapshot/localfile so the final rename
//     stays on one filesystem; [CleanStaleStaging] removes those of dead pulls.
//   - Known fields are re-encoded from their Go values: a known field whose
//     JSON type Cocoon changes fails to decode instead of being dropped.
package cocoon
