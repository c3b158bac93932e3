// Package snapgen generates deterministic, seeded, Cocoon-shaped snapshot data
// and revisions of it, for tests, the demo and benchmarks.
//
// Every generator keeps only a compact description of its content (a seed per
// 4 KiB page, or a list of segments of seeded byte streams) and produces bytes
// on demand, so a multi-GiB image costs megabytes of RAM and the same seed
// always yields the same bytes on every machine and every run. Values are
// immutable: Next returns a new revision and leaves the receiver untouched, so
// tests can keep old revisions around as oracles.
//
// The package lives outside any testdata folder because the go tool ignores
// packages under testdata.
package snapgen
