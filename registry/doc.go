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
//	blobs/packs/<hh>/<packid>                     packs; packid is the BLAKE3 of the pack bytes
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
// # Reads
//
// Every chunk is verified against its BLAKE3 ID, every recipe against its
// object ID, and every file against its SHA-256 digest before it is made
// visible (written to a temporary name, synced, renamed).
package registry
