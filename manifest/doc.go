// Package manifest defines the formats epoch-dedup stores besides packs:
// the snapshot manifest (JSON, compatible with Epoch v0.1.x schemaVersion
// 1), the catalog, name and tag rules, and recipe objects, which list the
// chunks of one file.
//
// # Basics
//
// Parse validates a manifest strictly (schema version, name, tag, plain
// file names, hex digests, bounded sizes) and keeps unknown top-level
// fields in Manifest.Extra, so a manifest from a newer writer round-trips.
// Digest is the SHA-256 of the exact stored bytes.
//
// A Recipe is a file's extents in order: data extents (a chunk id and a
// length) and zero extents (holes). It is canonical (no empty extents, no
// adjacent zero extents), so equal content cut the same way encodes to the
// same bytes and the same object id (chunk.Sum of the object). An unchanged
// file therefore costs no new metadata: its layer reuses the old recipe id.
//
// A changed file is stored as a patch against the previous revision's
// recipe object when Plan says so: Diff computes ops (copy n, skip n,
// insert extents) and EncodePatch writes them; Resolve loads a chain
// (at most MaxChainDepth patches over a full object), checking every
// object's BLAKE3 against its id, and Apply replays it. A patch grows with
// the change, not with the file. Measured (TestDiff_Cost): a 1 GiB file of
// 4 KiB pages, half zero (196775 extents after merging holes), encodes to a
// 4.5 MB full object; a revision rewriting 2% of its pages at random places
// encodes to a 145 KB patch, 3.2% of the 4.6 MB full object it replaces.
// Diff takes ~5-11 ms on it, EncodeFull ~60-90 ms, Decode ~35-55 ms.
//
// WriteFull writes the bytes EncodeFull returns into a file, streaming
// the body: a 4 GiB memory file's full object is 36 MB of ids that do not
// compress, which EncodeFull holds twice at its peak (raw and compressed);
// the registry spools every recipe of 65536 extents or more this way
// (pushing a 4 GiB memory file: 217 MiB of anonymous memory at the peak
// instead of 243).
//
// Both object kinds share an envelope: "EDRC", version, kind, raw and
// compressed body lengths, a zstd body, and a CRC-32C trailer, so a short
// object is reported as ErrRecipeTruncated and a damaged one as
// ErrRecipeChecksum before anything is decompressed.
//
// # Caveats
//
// Decode's memory follows the extents actually decoded, never a count the
// input claims, but a legitimate recipe may hold up to MaxExtents (2^26)
// extents, and zstd compresses a run of identical extents very well: a
// small hostile object that passes the checksum can still make Decode
// build a large recipe. Objects are verified against their id before
// decoding (Resolve does), so this needs write access to the store.
//
// Diff is greedy with a bounded look-ahead (DiffWindow): content that
// moves further than 64 extents is re-inserted rather than copied. The
// patch stays correct, only larger; and Plan falls back to a full object
// when a patch is not less than half of one.
//
// Only top-level unknown manifest fields round-trip; unknown fields inside
// layers are dropped.
package manifest
