// Package index is the node-local index of epoch-dedup: a bbolt file that
// answers, without a network round trip, where a chunk lies in the store
// (which pack, which block) and which local files already hold it. It is a
// cache of what the store's index objects and the node's files say:
// deleting it loses nothing but time.
//
// # Basics
//
// Open opens or creates the file. A file that cannot be opened, that is
// not an index, or that has another schema version is moved to
// path+".broken" and recreated; DB.Recreated reports it. A file locked by
// another process is an error (after Options.Timeout), never recreated.
//
// The store part: AddPack records a pack's table; Ingest records all packs
// of an index object and its name in one transaction (idempotent, so a
// node can ingest index objects it lists without tracking progress
// elsewhere); Lookup and LookupMany find locations; RemovePack forgets a
// pack; IngestTombstone forgets the packs a gc tombstone names and keeps
// them out for good (no later Ingest of an older index object adds them
// back); ForEachPack walks every pack with its table and LookupManyAccept
// finds a location outside packs the caller refuses (gc's condemned ones).
// EncodeIndexObject and DecodeIndexObject are the format of the
// index objects a push writes (magic "EDIX", version, lengths, zstd body,
// CRC-32C).
//
// The local part: AddLocalFile records which chunks a file holds, with a
// Validator (size, mtime, inode, device) taken when it was chunked;
// FindLocal returns candidate copies. A pull must compare the validator
// with a fresh stat and re-hash the bytes before using them.
// RememberDigest and KnownDigest map a recipe's content key to the SHA-256
// the node computed for those bytes, so content pushed again from a new
// file (every VM save writes one) is not hashed twice.
//
// Check verifies the whole file (bbolt pages, meta, and that the buckets
// agree). Package indextest runs it on every test database at cleanup.
//
// Writes are buffered: a pack's table is written as one value and its
// entries are answered from memory until Options.MergeThreshold entries
// are pending, then merged into the chunk tree sorted, in key-range slices
// of one transaction each. Inserting random 32-byte keys into a B+tree a
// few thousand at a time rewrites most of its leaves on every commit; one
// transaction for the whole batch would hold every leaf it rewrites in
// memory (180 MiB of dirty pages and nodes merging 2^18 entries into a
// 240 MB file); slices hold about 2 MiB of the tree each and still rewrite
// each leaf about once. A merge collects and sorts the pending records one
// range of chunk ids at a time (about 65536 records, 5.5 MB), and gives
// back the pending map's room afterwards: a cold node ingesting a store's
// index objects at once used to build 60 MB of records and keep a map
// grown to 700000 entries. AddLocalFile likewise records a file's chunks
// one id range per transaction, reading its iter.Seq again for each range
// instead of sorting a copy of all of them.
//
// With Options.BackgroundMerge (the registry's setting) AddPack and Ingest
// merge in a goroutine of their own and return: a push hashes its next
// pages while the entries of the packs it stored are merged. Pending
// entries stay bounded at twice the threshold. Lookups are exact
// throughout: a lookup that raced a merge (its read transaction older than
// the merge's commit, its look at the pending entries newer) asks again.
// First push of 1 GiB, three alternating pairs on the 2-core VM: 1.88-2.03 s
// against 2.03-2.21 s merging in the caller (AddPack); when pushes came to
// record their packs with Ingest (their index objects), which merged in the
// caller, the same push took 2.46-2.53 s against 2.12-2.48 s with Ingest
// merging in the background (four pairs). A call that crosses the
// threshold while a merge is under way leaves its entries to the next
// merge (up to twice the threshold) instead of queueing one right behind
// it: a 4 GiB push did that after every merge, rewriting the tree for a
// few thousand entries, 0.2-0.4 s each. Merging in the background is not
// what a cold node's catch-up wants: a 4 GiB snapshot's 700000 entries
// are ten merges' worth, and the download waited for them anyway; it
// stages them (StageAll) and merges once.
//
// Measured (BenchmarkDB_AddPack, 2-core VM, ext4):
// 131072 random chunk ids in 32 packs of 4096 take 0.60 s with fsync per
// commit (the default), 0.40 s with Options.NoSync, and 1.7 s when merging
// every pack. A Lookup in that index takes ~2.0-2.3 µs, LookupMany
// ~0.77-0.80 µs per id (1.0-1.07 µs before the pack numbers below).
//
// The chunk tree's keys name a pack by a 4-byte number (bucket packnos maps
// it to the pack id), not by its 32-byte id: an entry is 72 bytes of leaf
// instead of 100. Pushing a 4 GiB memory file into an empty store: index
// file 167-178 -> 142-145 MB, the index's mapped pages at the push's peak
// 137 -> 105-107 MiB, peak RSS 359-363 -> 325-331 MiB (two pairs).
//
// A node catching up on many index objects (a new node before its first
// pull) stages them with StageAll, a batch per transaction, and merges once
// at the end: merging after every MergeThreshold entries rewrote the whole
// tree each time, so the work grew with the square of the store. Cold pull
// of a 4 GiB memory file (700000 entries, folder store, 2-core VM): CPU of
// the index sync 3.8 s -> 2.1-2.2 s. Staged entries are not held in memory
// (a batch that fits below the threshold is, so a small catch-up does not
// force a merge); they answer lookups once Merge returns, and Open merges
// the ones a crash left behind when they are many.
//
// A merge and AddLocalFile unmap the file pages they touched after each
// range of ids (madvise MADV_DONTNEED on Linux; the pages stay in the page
// cache): the kernel counts every touched page of the mapping in the
// process's RSS, and the next range touches other leaves anyway.
// Pushing a 4 GiB memory file (4 KiB pages) into an empty store peaked at
// 935 MiB RSS before the slices and the unmapping, 567 MiB after, in the
// same time; unmapping per range instead of once at the end took the
// mapped pages of a cold pull of that file (ingesting the store's index
// objects) from 111 to 71 MiB.
//
// Lookups consult a Bloom filter of the ids in the chunk tree (16 bits per
// id, about 0.1 % false positives; built from a scan of the tree once
// lookups have missed in it 4096 times, so pulls and pushes of content the
// store holds never pay for it; grown by merges, rebuilt larger when full;
// at most 32 MiB). A
// push looks up every chunk of the file it reads and nearly all of a new
// file's chunks miss: each miss read a leaf through the mapping, the kernel
// mapped the 16 pages around it, and a few thousand misses kept the whole
// file mapped. Merges also unmap after every transaction, not only every
// range, and a transaction writes about 2 MiB of leaves, not 8: a
// commit reads the header of every leaf it replaces, so each transaction
// mapped a large part of the file again. Pushing a 4 GiB memory file into
// an empty store (2-core VM, two pairs): the index's mapped pages at the
// peak 106-107 -> 30-37 MiB, peak RSS 325 -> 217-227 MiB, in the same time
// (22.2 and 25.0 s against 22.6 and 25.6 s).
//
// LookupMany and LookupManyAccept answer from the tables of the last packs
// they found ids in (four, read from the same transaction) before asking
// the pending entries and the tree: chunks are mostly looked up in the
// order they were packed (a push of memory written again to a new file,
// the unchanged pages of a new revision, a pull), and a binary search of
// a table costs a fraction of a descent of the tree. A table is read only
// once three ids in a row were found in its pack, and the tables are
// dropped after four ids in a row none of them held, so lookups in no
// order (a pull asks for its unique chunks sorted by id) read few tables
// and map few of their pages (BenchmarkDB_Lookup, 32 packs of 4096 chunks,
// 2-core VM: LookupMany in pack order 660 -> 196-204 ns per id, shuffled
// 654 -> 729 ns; the re-push of a 1 GiB memory file spent 0.22 s of CPU in
// lookups, 0.03-0.06 s after).
//
// # Caveats
//
// A merge interrupted between its transactions leaves some entries of a
// pending pack in the chunk tree; Check accepts that, and the next merge
// writes them again.
//
// bbolt's free list is not written (NoFreelistSync): commits are cheaper,
// and Open rebuilds it by scanning the file.
//
// With Options.NoSync an OS crash or power loss can leave the file
// inconsistent in ways bbolt does not detect on open; a process crash is
// harmless. Open recovers from bbolt panics during its own checks by
// recreating the file, but not from panics in later reads.
//
// The in-memory pending map holds one location per chunk; merged chunks
// keep one location per (chunk, pack). Lookup returns one of them,
// unspecified which.
//
// ChunkCount and PackCount walk their buckets. Only one process can have
// the file open (bbolt's flock).
package index
