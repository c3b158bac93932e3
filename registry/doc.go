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
// # Reads
//
// Every chunk is verified against its BLAKE3 ID, every recipe against its
// object ID, and every file against its SHA-256 digest before it is made
// visible (written to a temporary name, synced, renamed).
package registry
