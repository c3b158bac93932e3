// Package bench measures what epoch-dedup saves and how fast it runs, against
// baselines measured in the same run on the same machine: restic (when
// installed), plain object-store GETs and PUTs of the same bytes, and
// whole-file uploads. Inputs come from the seeded generator
// (internal/snapgen), so every run sees the same bytes.
//
// Results are reported as ratios to those baselines, never as absolute
// pass/fail timings, and always with the machine they ran on. Peak memory is
// measured in a child process (the epoch-dedup binary re-executed with the
// hidden "bench child" command) from its rusage.
//
// RunBlob has three parts: the 1 GiB memory file (dedup of a 2 % rewrite,
// push speed against restic: the median of BlobConfig.Rounds rounds, each
// on a fresh store and a fresh restic repository, the two taking turns,
// since a single push on the benchmark VM moves by a third from run to
// run), peak memory pushing and pulling a 4 GiB one
// (folder store), and, with an S3 store, PullBlob of the 1 GiB file against
// one plain GET and the cold pull of a 4 GiB Cocoon-shaped snapshot (sparse
// guest memory and its JSON files) in a child process against plain GETs
// of the same files, measured before and after the pull. RunSeries pushes
// and pulls revisions of generated snapshots (memory at several dirty
// rates, a growing overlay, an export tar) and counts every byte.
package bench
