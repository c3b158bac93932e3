package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
)

// Default sizes of the series benchmark. Quick sizes keep a run under a
// minute for CI; default sizes are what bench/RESULTS.md reports.
const (
	DefaultMemorySize   = 512 << 20
	DefaultRevisions    = 5
	QuickMemorySize     = 32 << 20
	QuickRevisions      = 3
	DefaultInsertSize   = 1 << 20
	defaultPartSize     = 512 << 20
	defaultRepoTag      = "latest"
	memoryFileName      = "memory-ranges"
	overlayFileName     = "overlay.qcow2"
	tarFileName         = "export.tar" // not an image name: chunk.ParamsFor gives CDC
	memoryZeroFraction  = 0.3
	memoryCompressShare = 0.5
)

// DefaultRates are the shares of memory pages dirtied per revision.
var DefaultRates = []float64{0.001, 0.01, 0.05, 0.30}

// SeriesConfig chooses the series and their sizes. The zero value runs the
// default configuration; Quick switches the zero-valued sizes to CI sizes.
type SeriesConfig struct {
	// Quick selects small sizes (QuickMemorySize, QuickRevisions) for the
	// fields left zero.
	Quick bool
	// MemorySize is the guest memory image size (default DefaultMemorySize,
	// QuickMemorySize with Quick). 30 % of its pages start zero, non-zero
	// pages are half text-like, half random.
	MemorySize int64
	// OverlaySize is the initial qcow2-like overlay size (default
	// MemorySize/2); each revision grows it by 1/64 and rewrites 1 % of its
	// data pages.
	OverlaySize int64
	// TarSize is the initial export.tar stream size (default MemorySize/2).
	TarSize int64
	// TarInsertSize is the length of each insertion into the tar stream
	// (default DefaultInsertSize); each revision inserts
	// max(2, TarSize/32 MiB) runs at random, unaligned offsets.
	TarInsertSize int
	// Revisions is the number of revisions per generated series, the first
	// included (default DefaultRevisions, QuickRevisions with Quick).
	Revisions int
	// Rates are the shares of pages dirtied per memory revision (default
	// DefaultRates). Each rate gives two series, scattered and clustered
	// (aligned runs of snapgen.DirtyRun pages); besides the dirty pages,
	// rate/2 of the pages take the content of another page (move) and
	// rate/4 of the non-zero pages turn zero.
	Rates []float64
	// Only, when not empty, keeps the generated series whose name contains
	// one of these strings ("memory", "overlay", "tar", "clustered", ...).
	Only []string
	// NoGenerated skips the generated series, leaving only Dirs.
	NoGenerated bool
	// Dirs are real snapshot revisions: each folder is one revision of the
	// same VM, pushed in order with PushDir (its regular files only). They
	// have no known lower bound.
	Dirs []string
	// Polynomial is the chunker polynomial of every store the run creates
	// (default DefaultPolynomial). A fixed one keeps content-defined chunk
	// boundaries, and so the tar series' bytes, the same from run to run;
	// a store in real use gets a random one.
	Polynomial uint64 `json:"polynomial"`
}

// DefaultPolynomial is the chunker polynomial of the benchmark's stores:
// restic's test polynomial, irreducible of degree 53, chosen before any
// measurement and never tuned.
const DefaultPolynomial = 0x3DA3358B4DC173

// Config sets up the series benchmark.
type Config struct {
	Series SeriesConfig
	// S3 is an S3 store to run every series against besides the folder
	// store; nil runs the folder store only. A fresh prefix under its
	// Prefix is used and emptied afterwards.
	S3 *objectstore.Config
	// WorkDir holds generated revisions, stores, restic repositories and
	// pulled copies (default a temporary dir, removed afterwards).
	WorkDir string
	// Restic is the restic binary for the restic baseline: "" looks it up
	// in PATH (skipped when absent), "-" skips it.
	Restic string
	// PartSize is the part size of the zstd-parts baseline (default 512 MiB,
	// as Cocoon's later format).
	PartSize int64
	// Log receives progress lines; nil is silent.
	Log func(string)
	// OnSeries, when set, is called after each series with the report so
	// far, so a long run can write partial output as it goes.
	OnSeries func(*Report)
}

// resolved returns c with every default filled in.
func (c Config) resolved() Config {
	s := &c.Series
	if s.MemorySize == 0 {
		s.MemorySize = DefaultMemorySize
		if s.Quick {
			s.MemorySize = QuickMemorySize
		}
	}
	if s.OverlaySize == 0 {
		s.OverlaySize = s.MemorySize / 2
	}
	if s.TarSize == 0 {
		s.TarSize = s.MemorySize / 2
	}
	if s.TarInsertSize == 0 {
		s.TarInsertSize = DefaultInsertSize
	}
	if s.Revisions == 0 {
		s.Revisions = DefaultRevisions
		if s.Quick {
			s.Revisions = QuickRevisions
		}
	}
	if s.Rates == nil {
		s.Rates = slices.Clone(DefaultRates)
	}
	if s.Polynomial == 0 {
		s.Polynomial = DefaultPolynomial
	}
	if c.PartSize == 0 {
		c.PartSize = defaultPartSize
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	return c
}

// revisionSource produces the revisions of one series, in order.
type revisionSource struct {
	name string
	desc string
	// revs is the number of revisions.
	revs int
	// write puts revision n into dir (a new, empty folder) and returns the
	// lower bound of its upload (-1 when unknown). Dirs series return their
	// own folder instead of writing into dir.
	write func(n int, dir string) (string, int64, error)
}

// sources lists the series of cfg in a stable order.
func sources(cfg Config) ([]revisionSource, error) {
	s := cfg.Series
	var out []revisionSource
	if !s.NoGenerated {
		for _, rate := range s.Rates {
			for _, clustered := range []bool{false, true} {
				out = append(out, memorySource(s, rate, clustered))
			}
		}
		out = append(out, overlaySource(s), tarSource(s))
	}
	if len(s.Only) > 0 {
		out = slices.DeleteFunc(out, func(src revisionSource) bool {
			return !slices.ContainsFunc(s.Only, func(o string) bool { return strings.Contains(src.name, o) })
		})
	}
	if len(s.Dirs) > 0 {
		dirs := slices.Clone(s.Dirs)
		for _, d := range dirs {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("series dir %s: not a readable folder: %v", d, err)
			}
		}
		out = append(out, revisionSource{
			name: "dirs",
			desc: fmt.Sprintf("%d folders given on the command line, one revision each (%s ... %s)", len(dirs), dirs[0], dirs[len(dirs)-1]),
			revs: len(dirs),
			write: func(n int, _ string) (string, int64, error) {
				return dirs[n], -1, nil
			},
		})
	}
	if len(out) == 0 {
		return nil, errors.New("no series selected")
	}
	return out, nil
}

func rateName(rate float64) string {
	return strings.ReplaceAll(fmt.Sprintf("%gpct", rate*100), ".", "p")
}

func memorySource(s SeriesConfig, rate float64, clustered bool) revisionSource {
	pattern := "scattered"
	if clustered {
		pattern = "clustered"
	}
	seed := uint64(1000*rate*1000) ^ 0x6d656d
	if clustered {
		seed ^= 0xc1
	}
	var cur *snapgen.Memory
	change := snapgen.MemoryChange{DirtyFraction: rate, MoveFraction: rate / 2, ZeroFraction: rate / 4, Clustered: clustered}
	return revisionSource{
		name: "memory-" + rateName(rate) + "-" + pattern,
		desc: fmt.Sprintf("%s guest memory (memory-ranges, sparse, 30%% zero pages at first); per revision %g%% of pages dirtied (%s), %g%% moved, %g%% of non-zero pages zeroed",
			humanBytes(s.MemorySize), rate*100, pattern, rate*50, rate*25),
		revs: s.Revisions,
		write: func(n int, dir string) (string, int64, error) {
			prev := cur
			if n == 0 {
				cur = snapgen.NewMemory(snapgen.MemorySpec{Size: s.MemorySize, ZeroFraction: memoryZeroFraction, Compressibility: memoryCompressShare, Seed: seed})
				prev = snapgen.NewMemory(snapgen.MemorySpec{})
			} else {
				cur = cur.Next(change, seed+uint64(n))
			}
			// Sparse, as Cocoon stores memory-ranges.
			if err := cur.WriteFile(filepath.Join(dir, memoryFileName), true); err != nil {
				return "", 0, err
			}
			lb, err := zstdOfPages(cur, cur.NewPagesSince(prev))
			return dir, lb, err
		},
	}
}

func overlaySource(s SeriesConfig) revisionSource {
	var cur *snapgen.Overlay
	grow := max(s.OverlaySize/64, snapgen.ClusterSize)
	const rewrite = 0.01
	return revisionSource{
		name: "overlay",
		desc: fmt.Sprintf("qcow2-like overlay.qcow2 of %s at first; per revision it grows by %s of new clusters and %g%% of its data pages are rewritten",
			humanBytes(s.OverlaySize), humanBytes(grow), rewrite*100),
		revs: s.Revisions,
		write: func(n int, dir string) (string, int64, error) {
			prev := cur
			if n == 0 {
				cur = snapgen.NewOverlay(snapgen.OverlaySpec{Size: s.OverlaySize, Seed: 0x6f766c})
				prev = snapgen.NewOverlay(snapgen.OverlaySpec{})
			} else {
				cur = cur.Next(grow, rewrite, 0x6f766c+uint64(n))
			}
			if err := cur.WriteFile(filepath.Join(dir, overlayFileName), false); err != nil {
				return "", 0, err
			}
			lb, err := zstdOfOverlayPages(cur, cur.NewPagesSince(prev))
			return dir, lb, err
		},
	}
}

func tarSource(s SeriesConfig) revisionSource {
	var cur *snapgen.Tar
	inserts := int(max(2, s.TarSize/(32<<20)))
	return revisionSource{
		name: "export-tar",
		desc: fmt.Sprintf("`snapshot export`-style export.tar of %s at first (content-defined chunks); per revision %d runs of %s inserted at random unaligned offsets, shifting the bytes after them",
			humanBytes(s.TarSize), inserts, humanBytes(int64(s.TarInsertSize))),
		revs: s.Revisions,
		write: func(n int, dir string) (string, int64, error) {
			prev := cur
			if n == 0 {
				cur = snapgen.NewTar(snapgen.TarSpec{Size: s.TarSize, Seed: 0x746172})
			} else {
				cur = cur.Next(inserts, s.TarInsertSize, 0x746172+uint64(n))
			}
			if err := cur.WriteFile(filepath.Join(dir, tarFileName)); err != nil {
				return "", 0, err
			}
			lb, err := zstdOfInserted(prev, cur)
			return dir, lb, err
		},
	}
}

// Run runs every selected series against the folder store (and S3 when
// cfg.S3 is set) and returns the measurements. Sizes and timings are
// measured in this run only; compare ratios, not seconds, across runs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.resolved()
	srcs, err := sources(cfg)
	if err != nil {
		return nil, err
	}
	work := cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "epoch-bench-series-*")
		if err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		defer func() { _ = os.RemoveAll(dir) }()
		work = dir
	}
	restic := cfg.Restic
	switch restic {
	case "-":
		restic = ""
	case "":
		restic, _ = lookRestic()
	}
	start := time.Now()
	rep := &Report{Machine: Machine(), Config: cfg.Series, PartSize: cfg.PartSize, Started: start.UTC(), RSSMethod: rssMethod()}
	rep.Stores = []string{storeFolder}
	if cfg.S3 != nil {
		rep.Stores = append(rep.Stores, storeS3)
	}
	if restic != "" {
		rep.Restic = resticVersion(ctx, restic)
	}
	for _, src := range srcs {
		cfg.Log("series " + src.name)
		sr, err := runSeries(ctx, cfg, restic, filepath.Join(work, src.name), src)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", src.name, err)
		}
		sr.Claims = checkClaims(sr)
		rep.Series = append(rep.Series, sr)
		rep.Seconds = time.Since(start).Seconds()
		if cfg.OnSeries != nil {
			cfg.OnSeries(rep)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}
