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
package bench
