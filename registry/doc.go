// Package registry is the facade of epoch-dedup: the documented Epoch
// registry API (Registry, Puller) on top of a chunked, deduplicated store.
//
// The names and signatures are those of github.com/cocoonstack/epoch/registry
// v0.1.6, so vk-cocoon switches by changing one import path. Underneath,
// content is no longer stored as whole blobs: every file is split into chunks
// (package chunk), new chunks are packed and compressed (package pack) and
// written to the object store (package objectstore); a node-local index
// (package index) records which chunks the store and the node already hold,
// so push and pull move only what the other side lacks.
//
// # Store layout
//
// All keys live under the client's prefix (default "epoch/"):
//
//	config.json                                   store config: version, chunker polynomial (create-only)
//	blobs/sha256/<sha256>                         Epoch v0.1.x whole blobs (read transparently)
//	blobs/chunked/<sha256>.json                   blob descriptor: digest, size, recipe id
//	blobs/packs/<hh>/<packid>                     packs; packid is the BLAKE3 of the pack's tail (pack.TailID)
//	blobs/index/<name>                            index objects: tables of the packs one push wrote
//	blobs/recipes/<hh>/<recipeid>                 recipes (full or patch); id is the BLAKE3 of the bytes
//	manifests/<name>/<tag>.json                   manifest by tag
//	manifests/<name>/_digests/sha256-<hex>.json   manifest by content digest
//	catalog.json                                  Epoch catalog, updated by If-Match compare-and-swap
//
// # Writes and visibility
//
// A push writes in dependency order: packs, then the index object naming
// them, then recipes, then blob descriptors and manifests, and last the
// catalog. Content-addressed objects are written create-only; a push that
// dies midway leaves only unreferenced packs behind, never a manifest that
// names something missing. The catalog is updated by compare-and-swap on its
// ETag, so concurrent pushers from many machines never lose each other's
// tags.
//
// A push reads each file once: one stage chunks it and hashes the chunks
// (BLAKE3, on every core), one looks them up in the node index, one packs
// the new ones, and one computes the file's SHA-256. That last one starts
// at the first chunk the store lacks. A file made only of known chunks
// (the same memory saved again to a new file) is then not hashed at all if
// the node has hashed, or pulled and verified, content with the same
// recipe before: the node index remembers each recipe's SHA-256 under a
// key of its chunk IDs (manifest.Recipe.ContentKey), and chunk IDs name
// their bytes. Otherwise the file is read back and hashed, and must not
// have changed (size, mtime, inode) since it was opened.
//
// # Garbage collection
//
// GC (docs/GC.md) deletes what no kept manifest needs without a lock: any
// number of pushes and pulls run meanwhile. A run syncs its index, applies
// retention (GCOptions.KeepLast, KeepTags), marks as live the recipe chains
// and chunks of every manifest and of every blob descriptor younger than
// the grace period T, executes the plans (gc/plans/) of earlier runs older
// than T (a tombstone in gc/deleted/ naming what goes, the deletions, then
// the plan; a condemned object found live again is kept), and writes a new
// plan condemning what is older than T and not live. Packs whose live share
// is below GCOptions.RewriteBelow first have their live chunks copied to a
// new pack. Nothing is deleted before a later run, at least T after it was
// condemned.
//
// Pushes cooperate: chunks located only in condemned packs count as
// unknown; right before a manifest or blob descriptor is written, a push
// lists the plans again, copies chunks it uses out of packs condemned by a
// plan older than T/2, fails with ErrConcurrentGC (retryable) when it uses
// a condemned or deleted recipe or descriptor, and writes the manifest under
// a deadline of T/4. Every node's index sync ingests the tombstones; a
// deleted pack is never indexed again. Every pack starts with a random salt
// chunk, so a pack uploaded again never takes the ID of a condemned or
// deleted one. The pushers' T (WithGCGrace) must not exceed gc's
// (GCOptions.Grace); both default to 1 h.
//
// # Puller (vk-cocoon)
//
// vk-cocoon makes one Puller per node (NewPuller reads the store settings
// from a ConfigMap: through the API server with the pod's service account,
// else kubectl, else the EPOCH_S3_* environment) and calls EnsureSnapshot
// before every "cocoon vm clone" (see ExamplePuller):
//
//   - EnsureSnapshot(ctx, name) returns at once, without asking the store,
//     when Cocoon already has a snapshot of that name; otherwise it pulls
//     name:latest.
//   - EnsureSnapshotTag(ctx, name, tag) reads the tag's manifest (one small
//     GET) and compares its digest with the one recorded in the snapshot's
//     record when it was pulled (epoch_manifest_digest); a snapshot made on
//     this node, or another revision, is replaced by the tag's revision,
//     pulled mostly from chunks the node already holds.
//   - Calls for the same name:tag from many goroutines share one pull; the
//     shared pull keeps going if the first caller's context ends, since
//     others wait on it.
//   - PreWarm pulls in the background, at most DefaultPreWarmConcurrency at
//     a time, and returns at once.
//   - A pull is staged beside Cocoon's snapshot dir, verified, renamed into
//     place (or swapped with the old revision atomically), then recorded in
//     snapshots.json under Cocoon's lock, keeping every other record and
//     every field this code does not know. A pull killed midway leaves no
//     snapshot and no record; the next pull of the snapshot adopts the dead
//     pull's staging dir and reuses every chunk it already wrote.
//
// # Reads
//
// Every chunk is verified against its BLAKE3 ID, every recipe against its
// object ID, and every file against its SHA-256 digest before it is made
// visible (written to a temporary name, synced, renamed).
package registry
