// Package pagehash computes the BLAKE3-256 hashes of 4 KiB pages four at a
// time, the same digests as blake3.Sum256 of each page.
//
// A 4 KiB input is four BLAKE3 chunks. github.com/zeebo/blake3 hashes
// chunks eight at a time in AVX2 lanes, so one page fills half of them, and
// then merges the page's tree one compression at a time. Guest memory is
// chunked into millions of such pages, and their hashing was the largest
// CPU cost of a push of content the store already holds. Here two pages
// share one eight-lane call (the per-lane chunk counters restart at the
// second page) and the tree levels of four pages are merged in two
// eight-lane parent calls. The kernels are zeebo/blake3's AVX2 assembly
// (CC0), with that one change to the counters; without AVX2, or with the
// purego build tag, every page is hashed with blake3.Sum256.
package pagehash
