// Package puller is the pull engine: it turns a file's recipe back into a
// file on local disk, moving as few bytes as it can.
//
// For every chunk a recipe names, the engine takes the cheapest verified
// source:
//
//  1. a local file the node index knows holds the chunk (an earlier pulled or
//     pushed snapshot, a base image): the file is stat-checked against the
//     validator recorded with it, the bytes are read and their BLAKE3 hash is
//     checked before they are used. Where the filesystem clones ranges (XFS
//     with reflink, btrfs: FICLONERANGE), a verified run of page-aligned
//     chunks is cloned instead of written: the new file shares the old
//     one's blocks, costing no page cache, no writeback and no disk space
//     (Stats.ClonedBytes); a source that changes between the check and the
//     clone fails the file's SHA-256, which is computed from what the file
//     holds at the end. ext4 and tmpfs refuse, and the bytes are written;
//  2. otherwise the store: chunks are grouped by pack, sorted by offset and
//     coalesced into runs, each run read with one ranged request by a
//     bounded pool of workers; a worker decodes and writes the run's blocks
//     as they stream in, so memory stays bounded by concurrency x one block
//     (plus 1 MiB of write coalescing), not by the run length. A body that
//     breaks or ends early is read again from its first block not yet
//     written, up to three reads per run.
//
// Before it creates anything, the engine checks that the files' data (holes
// excluded) fits in the free space of their filesystem, less 64 MiB of
// slack, and fails with ErrNoSpace naming both numbers otherwise: a pull
// that would fill the disk, or a hostile recipe claiming terabytes, is
// refused up front instead of failing part-way. So is a file over
// MaxFileSize (16 TiB), even one of holes only.
//
// Zero extents are never fetched nor written: the file is created at its
// full size and they stay holes. Every chunk is verified before it is
// written, and the whole file is verified against its SHA-256 digest before
// the caller installs it (the digest is computed while the file's fsync
// runs; its mode is set only once it is verified). The engine writes only
// to the path it is given; making the result visible (rename into place)
// is the caller's job, so an interrupted pull never leaves a half-written
// file where a reader looks. With File.Record, a verified file's chunks are
// recorded in the node index under the name the caller renames it to, so a
// later pull can copy them.
//
// Memory: once planned, a fetch holds per chunk one target (id, file,
// offset, length: 48 bytes), its unique ids and, while downloading, a
// 32-byte location; it lets the recipes go (a caller that keeps no
// reference frees them), keeping only each file's holes. A cold pull of a
// 4 GiB memory file (730000 chunks) peaked at 218-241 MiB RSS, 105-113 MiB
// of it the node index's mapped pages.
//
// The engine knows no object store: it reads packs through the narrow
// PackReader interface, which the registry implements.
package puller
