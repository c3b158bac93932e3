// Package pack is the on-disk format of pack files: many chunks, grouped
// into compressed blocks, with a table that names and locates each chunk.
// It knows bytes only; storing and fetching packs is the caller's job.
//
// # Layout
//
// A pack is, in order (integers little-endian, varints are uvarints):
//
//	header  "EDPK" and the format version byte (Version, 1)
//	blocks  one after another from offset HeaderSize; each block is
//	        a type byte (0 raw, 1 zstd) and its payload
//	table   one zstd frame; decoded:
//	          uvarint block count
//	          per block: uvarint stored length (type byte included),
//	                     uvarint chunk count,
//	                     per chunk: 32-byte ID, uvarint length
//	footer  FooterSize (21) bytes:
//	          uint32 stored table length, uint32 decoded table length,
//	          uint32 chunk count, uint32 CRC32C of the stored table and
//	          the three fields before it, version byte, "EDPK"
//
// A block holds consecutive chunks concatenated; its decoded bytes are its
// chunks in table order, so every offset is implied by the lengths and the
// table cannot point between chunks or outside the blocks. Blocks are
// filled to at least the block size (WithBlockSize, default 64 KiB) before
// being compressed, so a 4 KiB page does not pay for its own zstd frame,
// and a block is stored zstd only when that saves at least 1/32 of it;
// random pages are stored raw. Overhead per 4 KiB chunk: 34.3 bytes (ID 32,
// varints about 2, block framing and footer about 0.3), 0.84% of the raw
// bytes (TestOverhead).
//
// Measured on a 2-core x86_64 VM under load from other builds (lower
// bounds): BenchmarkWriter_Add on half-compressible 4 KiB pages, SpeedFastest
// ~1.07 GB/s at ratio 0.512, SpeedDefault ~0.32 GB/s at 0.513, hence the
// DefaultLevel; BenchmarkExtractChunks (decode + BLAKE3 verify) ~1.0 GB/s.
//
// # Naming
//
// A pack's id is the BLAKE3 of its tail, the stored table and the footer
// (TailID; Writer.ID after Finish). The table names every chunk and the
// stored length of every block, so the id commits to what the pack holds
// and where, and the chunk hashes verify the blocks on every read; hashing
// all of the pack instead cost a push a second BLAKE3 pass over the bytes
// it uploads (0.4 s of CPU per GiB on the 2-core VM). Packs named by the
// BLAKE3 of all their bytes by earlier writers read the same: no reader
// derives an id from a pack's bytes.
//
// # Reading
//
// The footer is at the end, so a reader fetches the last DefaultTailSize
// bytes with one ranged read, calls ParseTail, and reads more only when it
// returns a *ShortTailError. ParseTail checks magic and version, bound-checks
// every length against the pack size and the format limits (MaxTableRawSize,
// MaxBlockRawSize, MaxChunkSize) before allocating, verifies the checksum,
// then decodes the table. PlanRuns groups wanted entries into ranged reads;
// ExtractChunks decodes each needed block once and hashes every chunk
// against its ID before handing it out. Hostile input yields an error
// (ErrCorrupt, ErrBadMagic, ErrVersion, ErrChecksum, ErrTooLarge or a
// *CorruptChunkError), never a panic, an unbounded allocation or unverified
// data.
//
// # Writing
//
// A Writer builds one pack in memory, or streams it block by block to an
// io.Writer (WithOutput: it then holds only the open block and the table).
// Add copies chunks in, Finish returns the pack bytes (none when streamed)
// and its entries after parsing its own tail back (restic's
// verify-after-write). Share one encoder (NewEncoder, WithEncoder) among
// writers: zstd encoders are costly to create and EncodeAll is safe for
// concurrent use. The zstd frames carry no CRC: chunk IDs already are a
// stronger check.
//
// # Caveats
//
// The table's CRC32C guards against accidents, not attackers; an attacker
// who rewrites a table can only make chunks fail their hash check. The
// package-level zstd decoder is created once (sync.OnceValues), never
// reconfigured, and safe for concurrent use; it is the only package state.
// A Version other than 1 is refused with ErrVersion: a format change gets a
// new version, and readers learn it before writers use it.
package pack
