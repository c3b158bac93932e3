// Package chunk splits files into chunks and names them.
//
// A chunk's name is its ID, the BLAKE3-256 of its bytes (Sum). A Splitter
// walks a file with bounded memory (4 MiB reads), cuts it by Params, marks
// all-zero pages and holes as Zero chunks that are never read (holes),
// hashed or stored, and hashes the other chunks of each read window in
// parallel. Chunks cover the file exactly, in order.
//
// A Splitter over an *os.File maps its windows (Linux) instead of reading
// them: the read's copy from the page cache was the largest system time of
// a push. A hole read through a mapping would put a zero page in the page
// cache, so windows with holes are mapped only by Fixed splitters, which
// never read a hole unit, and without MAP_POPULATE; CDC splitters read
// them (re-push of a sparse 4 GiB memory file, own process: 2.07-2.88 s
// -> 1.61-1.75 s). A file truncated while it is split would fault on the mapping;
// the splitter's reads run under Guard, which turns that into ErrShrank,
// and a caller that reads Chunk.Data does the same.
//
// Summer hashes many chunks, 4 KiB pages four at a time in shared SIMD
// lanes (package chunk/internal/pagehash): one page fills only half of
// BLAKE3's eight AVX2 lanes; with AVX-512 four pages fill sixteen.
// Everything that hashes chunks in bulk uses it: the splitter, pack
// extraction and the puller's local copies.
//
// # Choosing parameters
//
// ParamsFor picks by file name: guest memory (memory-ranges, mem, *memory*)
// and disk images (*.raw, *.qcow2, *.img) use fixed 4 KiB chunks aligned to
// the file start, because their changes are 4 KiB pages at page-aligned
// offsets and pages that move keep their ID at any aligned offset; all
// other files (JSON, vmstate, tar) use content-defined chunking with
// min/avg/max 16/64/256 KiB, which survives insertions that shift bytes.
// The CDC polynomial is chosen once per store (RandomPolynomial) and
// recorded with FormatPol; Params.String is the recorded method.
//
// Zero detection works on 4 KiB pages (PageSize). Fixed: a chunk whose
// bytes are all zero is a zero chunk; consecutive zero chunks merge into
// one (up to 1 GiB), so a sparse 12 GiB memory file has a short recipe.
// CDC: runs of whole zero pages are cut out first and the fingerprint
// restarts on each run of data pages.
//
// # Measurements
//
// TestMeasureDedup (EPOCH_MEASURE=1) builds a 256 MiB image of 4 KiB pages,
// 30% zero and the rest random, dirties 0.1%, 1% or 5% of its pages with
// random bytes, and reports the bytes of chunks not in the first version as
// a share of the image ("new"), plus the non-zero chunk count of one
// version. Zero pages either scattered one by one, or clustered in runs of
// 1..128 pages, as free guest memory is:
//
//	                     scattered zeros            clustered zeros
//	params               0.1%    1%     5%  chunks  0.1%    1%     5%  chunks
//	fixed-4096           0.1%   1.0%   4.9%  45885  0.1%   1.0%   4.9%  45855
//	fixed-16384          0.4%   3.9%  18.2%  16249  0.4%   3.9%  18.2%  11627
//	fixed-65536          1.6%  14.7%  55.7%   4096  1.6%  14.7%  55.7%   3059
//	cdc-4k-16k-64k       0.4%   3.6%  17.2%  20403  0.6%   6.1%  25.6%   9486
//	cdc-16k-64k-256k     0.5%   4.7%  22.0%  14420  2.1%  17.7%  51.3%   2468
//	cdc-64k-256k-1m      0.5%   4.9%  23.1%  13828  6.3%  38.3%  67.8%    757
//	cdc-512k-1m-8m       0.5%   4.9%  23.1%  13826 13.1%  55.9%  70.9%    285
//
// Fixed 4 KiB is the only method whose new bytes track the dirtied pages
// (FACTS §4 found the same on 512 MiB). CDC looks good with scattered zeros
// only because zero cut-outs leave runs of ~3 pages, shorter than Min; with
// realistic clustered zeros it falls behind by 4x (16/64/256) to 14x
// (restic's default). 16/64/256 KiB stays the CDC default for the small,
// shifting files it serves: smaller averages cost more IDs and throughput,
// larger ones lose dedup on edits.
//
// Throughput, same image (scattered zeros), bytes.Reader input, 2-core
// x86_64 VM (AMD "Turin-like", GOMAXPROCS=2), go1.26.8, measured while
// other builds kept the load average at 7-13, so these are lower bounds:
//
//	BenchmarkSplitter_Fixed4K, 2 workers    ~1.0-2.0 GB/s
//	BenchmarkSplitter_Fixed4K, 1 worker     ~0.25-1.3 GB/s
//	BenchmarkSplitter_CDC 16/64/256, zeros  ~0.3-0.9 GB/s
//	BenchmarkSplitter_CDC 16/64/256, dense  ~0.13-0.34 GB/s (Rabin is serial)
//	BenchmarkSplitter_CDC restic, dense     ~0.33-0.39 GB/s
//	BenchmarkSum_4K (BLAKE3, one core)      ~0.5-1.4 GB/s
//	BenchmarkSummer_4K (four pages a call)  ~3.4 GB/s when Sum_4K ran 1.4 (2.4x)
//	BenchmarkIsZero, zero page              ~8-58 GB/s; a random page exits in ~2 ns
//
// Later, on a 2-core Intel Xeon VM with AVX-512 (Sapphire Rapids-like):
// BenchmarkSum4 (package pagehash) 4.8-5.0 GB/s with AVX-512 against
// 2.9 GB/s with AVX2 and 1.3 GB/s with blake3.Sum256. Read through a
// mapping, from memory, a zero page scans at ~4 GB/s (0.14 s of CPU for
// the 512 MiB of zero pages of a 1 GiB re-push), against 53 GB/s from
// cache: the splitter spreads that scan over its workers.
//
// # Caveats
//
// Fixed chunk boundaries are offsets: an insertion shifts every later page
// out of alignment (images never insert). Chunk.Data is valid only until
// the next Next, NextBatch or Close call, and may be the file's mapping. DataRegions falls back to one region
// where SEEK_DATA is unsupported; bytes it calls holes are trusted to read
// as zero.
package chunk
