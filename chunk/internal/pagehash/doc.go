// Package pagehash computes the BLAKE3-256 hashes of 4 KiB pages four at a
// time, the same digests as blake3.Sum256 of each page.
//
// A 4 KiB input is four BLAKE3 chunks. github.com/zeebo/blake3 hashes
// chunks eight at a time in AVX2 lanes, so one page fills half of them, and
// then merges the page's tree one compression at a time. Guest memory is
// chunked into millions of such pages, and their hashing was the largest
// CPU cost of a push of content the store already holds.
//
// With AVX-512 (F, VL and BW, as golang.org/x/sys/cpu reports them) the
// four pages' sixteen chunks fill the sixteen lanes of one kernel call
// (lane 4p+c is chunk c of page p), and the same call merges the pages'
// trees: the eight parents in eight lanes, then the four roots in four.
// The kernel, hash_avx512_amd64.s, is written by gen_avx512.go; it keeps the
// state and the message in the 32 Z registers and rotates with VPRORD.
// Merging the parents with the AVX2 parent kernel instead, after a
// chunks-only AVX-512 call, measured 15-20% slower.
//
// With AVX2 only, two pages share one eight-lane call (the per-lane chunk
// counters restart at the second page) and the tree levels of four pages
// are merged in two eight-lane parent calls. These kernels are zeebo/blake3's
// AVX2 assembly (CC0), with that one change to the counters. Without AVX2,
// or with the purego build tag, every page is hashed with blake3.Sum256.
//
// BenchmarkSum4 on a 2-vCPU Intel Xeon virtual machine (AVX-512 with FP16,
// so Sapphire Rapids or later), Go 1.26, four pages per op: AVX-512 about
// 4.8-5.0 GB/s, AVX2 about 2.9 GB/s, blake3.Sum256 of each page about
// 1.3 GB/s.
package pagehash
