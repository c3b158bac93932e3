package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

const (
	demoName          = "epoch-dedup-demo"
	demoDirtyFraction = 0.02 // pages rewritten per save
	demoMoveFraction  = 0.03 // pages that take another page's content
	demoZeroFraction  = 0.01 // pages freed per save
	demoDiskRewrite   = 0.01 // disk data rewritten per save
	demoDiskGrowShare = 16   // the disk grows by 1/16 of its first size per save
)

// demoOptions are the demo's flags.
type demoOptions struct {
	memory    sizeFlag
	disk      sizeFlag
	revisions int
	seed      uint64
	name      string
	tmpDir    string
}

// demoRevision is one row of the demo table.
type demoRevision struct {
	Revision       int     `json:"revision"`
	Tag            string  `json:"tag"`
	RawBytes       int64   `json:"raw_bytes"`
	WholeFileBytes int64   `json:"whole_file_bytes"`
	UploadBytes    int64   `json:"upload_bytes"`
	DownloadBytes  int64   `json:"download_bytes"`
	Chunks         int64   `json:"chunks"`
	NewChunks      int64   `json:"new_chunks"`
	PushSeconds    float64 `json:"push_seconds"`
	PullSeconds    float64 `json:"pull_seconds"`
	Verified       bool    `json:"verified"`
}

// demoResult is the demo's JSON output.
type demoResult struct {
	Store           string         `json:"store"`
	Name            string         `json:"name"`
	Seed            uint64         `json:"seed"`
	MemoryBytes     int64          `json:"memory_bytes"`
	DiskBytes       int64          `json:"disk_bytes"`
	Revisions       []demoRevision `json:"revisions"`
	Total           demoRevision   `json:"total"`
	UploadSavings   float64        `json:"upload_savings"`   // whole-file bytes / epoch-dedup upload
	DownloadSavings float64        `json:"download_savings"` // whole-file bytes / epoch-dedup download
	// The same ratios over revisions 2 and later: the steady state of a VM
	// saved again and again.
	UploadSavingsAfterFirst   float64 `json:"upload_savings_after_first"`
	DownloadSavingsAfterFirst float64 `json:"download_savings_after_first"`
	Verified                  bool    `json:"verified"`
	Seconds                   float64 `json:"seconds"`
}

func newDemoCmd(a *app) *cobra.Command {
	o := demoOptions{memory: 256 << 20, disk: 64 << 20, revisions: 4, name: demoName}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Push and pull sample snapshot revisions and show the savings",
		Long: `Make a Cocoon-shaped root in a temporary folder with a generated VM snapshot
(guest memory with zero pages and pages that change and move between saves,
a growing qcow2-like disk overlay, JSON state files, a base image), save it
--revisions times, push each revision to the store (--store as usual: the
default local folder unless given), and pull each one on a second simulated
node, which starts empty and keeps the revision it pulled before. Every
pulled file is compared byte for byte with its source.

The table shows per revision: the raw size; what a whole-file registry
(Epoch v0.1.x) sends, every file whose SHA-256 changed since the previous
revision, in full, in either direction; and what epoch-dedup uploaded and
downloaded. Both simulated nodes use index caches in the temporary folder,
so --cache-dir is not used. Content is random per run (unless --seed), so
earlier demo runs in the same store do not flatter the numbers.`,
		Example: `  epoch-dedup demo
  epoch-dedup demo --memory 1GiB --revisions 6
  epoch-dedup --store /tmp/demo-store demo --memory 32MiB --revisions 3 --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.revisions < 1 || o.revisions > 100 {
				return usagef("--revisions %d: want 1 to 100", o.revisions)
			}
			if o.memory < 1<<20 || o.disk < 1<<20 {
				return usagef("--memory and --disk must be at least 1MiB")
			}
			if o.tmpDir == "" {
				o.tmpDir = demoTempBase(int64(o.memory), int64(o.disk), o.revisions)
			}
			if o.seed == 0 {
				var b [8]byte
				_, _ = rand.Read(b[:])
				o.seed = binary.LittleEndian.Uint64(b[:]) | 1
			}
			return a.demo(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.Var(&o.memory, "memory", "guest memory size")
	f.Var(&o.disk, "disk", "first size of the disk overlay")
	f.IntVar(&o.revisions, "revisions", o.revisions, "number of saved revisions")
	f.Uint64Var(&o.seed, "seed", 0, "content seed (default random)")
	f.StringVar(&o.name, "name", o.name, "repository name to push as")
	f.StringVar(&o.tmpDir, "tmp-dir", "", "where to make the temporary Cocoon roots (default $TMPDIR, else /dev/shm when it has room, else /tmp)")
	return cmd
}

// status prints a progress line on stderr unless -q or --json.
func (a *app) status(format string, args ...any) {
	if a.quiet || a.json {
		return
	}
	_, _ = fmt.Fprintf(a.stderr, format+"\n", args...)
}

func (a *app) demo(ctx context.Context, o demoOptions) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(o.tmpDir, "epoch-dedup-demo-*")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	cfg, err := a.storeConfig()
	if err != nil {
		return err
	}
	// Two nodes: each its own client (own counters) and own index cache.
	nodeA, err := demoRegistry(cfg, filepath.Join(tmp, "cache-a"))
	if err != nil {
		return err
	}
	defer func() { _ = nodeA.Close() }()
	nodeB, err := demoRegistry(cfg, filepath.Join(tmp, "cache-b"))
	if err != nil {
		return err
	}
	defer func() { _ = nodeB.Close() }()
	pathsA := cocoon.NewPaths(filepath.Join(tmp, "node-a"))
	pathsB := cocoon.NewPaths(filepath.Join(tmp, "node-b"))
	// An empty snapshot DB: the demo node holds only the demo VM.
	if err := os.MkdirAll(filepath.Dir(pathsA.SnapshotDBFile), 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.WriteFile(pathsA.SnapshotDBFile, []byte(`{"snapshots":{},"names":{}}`+"\n"), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	res := &demoResult{
		Store: nodeA.Store().String(), Name: o.name, Seed: o.seed,
		MemoryBytes: int64(o.memory), DiskBytes: int64(o.disk), Verified: true,
	}
	a.status("demo: %d revisions of a VM with %s memory and a %s disk, store %s",
		o.revisions, cocoon.HumanSize(int64(o.memory)), cocoon.HumanSize(int64(o.disk)), res.Store)
	series := snapgen.NewSnapshotSeries(snapgen.SnapshotSpec{
		Name: o.name, MemorySize: int64(o.memory), DiskSize: int64(o.disk), Seed: o.seed,
	})
	prev := map[string]string{}
	for n := 1; n <= o.revisions; n++ {
		if n > 1 {
			series.Next(snapgen.MemoryChange{
				DirtyFraction: demoDirtyFraction, MoveFraction: demoMoveFraction, ZeroFraction: demoZeroFraction,
			}, int64(o.disk)/demoDiskGrowShare, demoDiskRewrite)
		}
		row, err := a.demoRevision(ctx, n, series, nodeA, nodeB, pathsA, pathsB, prev)
		if err != nil {
			return err
		}
		res.Revisions = append(res.Revisions, row)
		res.Verified = res.Verified && row.Verified
	}
	for _, r := range res.Revisions {
		t := &res.Total
		t.RawBytes += r.RawBytes
		t.WholeFileBytes += r.WholeFileBytes
		t.UploadBytes += r.UploadBytes
		t.DownloadBytes += r.DownloadBytes
		t.Chunks += r.Chunks
		t.NewChunks += r.NewChunks
		t.PushSeconds += r.PushSeconds
		t.PullSeconds += r.PullSeconds
	}
	res.Total.Tag = "total"
	res.Total.Verified = res.Verified
	res.UploadSavings = ratio(res.Total.WholeFileBytes, res.Total.UploadBytes)
	res.DownloadSavings = ratio(res.Total.WholeFileBytes, res.Total.DownloadBytes)
	var whole, up, down int64
	for _, r := range res.Revisions[1:] {
		whole, up, down = whole+r.WholeFileBytes, up+r.UploadBytes, down+r.DownloadBytes
	}
	res.UploadSavingsAfterFirst, res.DownloadSavingsAfterFirst = ratio(whole, up), ratio(whole, down)
	res.Seconds = time.Since(start).Seconds()
	if a.json {
		return a.printJSON(res)
	}
	a.printDemo(res)
	return nil
}

func demoRegistry(cfg *objectstore.Config, cacheDir string) (*registry.Registry, error) {
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg, err)
	}
	return registry.New(client, registry.WithCacheDir(cacheDir)), nil
}

// demoRevision writes revision n on node A, pushes it, pulls it on node B
// and compares the files.
func (a *app) demoRevision(ctx context.Context, n int, series *snapgen.Series, nodeA, nodeB *registry.Registry,
	pathsA, pathsB *cocoon.Paths, prev map[string]string,
) (demoRevision, error) {
	row := demoRevision{Revision: n, Tag: fmt.Sprintf("rev%d", n)}
	id, err := series.WriteSnapshot(pathsA.RootDir)
	if err != nil {
		return row, fmt.Errorf("demo: %w", err)
	}
	files, err := demoFiles(pathsA, id)
	if err != nil {
		return row, err
	}
	// What a whole-file registry sends: every file whose digest changed.
	for _, f := range files {
		sum, size, err := sha256File(f)
		if err != nil {
			return row, fmt.Errorf("demo: %w", err)
		}
		key := filepath.Base(f)
		row.RawBytes += size
		if prev[key] != sum {
			row.WholeFileBytes += size
		}
		prev[key] = sum
	}
	a.status("rev %d: pushing %s", n, cocoon.HumanSize(row.RawBytes))
	_, push, err := nodeA.PushSnapshot(ctx, pathsA, series.Name(), "latest", nil)
	if err != nil {
		return row, fmt.Errorf("demo: %w", err)
	}
	if err := nodeA.Tag(ctx, series.Name(), "latest", series.Name(), row.Tag); err != nil {
		return row, fmt.Errorf("demo: %w", err)
	}
	row.UploadBytes, row.Chunks, row.NewChunks, row.PushSeconds = push.UploadedBytes, push.Chunks, push.NewChunks, push.Seconds
	a.status("rev %d: pulling on the second node", n)
	m, pull, err := nodeB.PullSnapshot(ctx, pathsB, series.Name(), row.Tag, registry.PullOptions{})
	if err != nil {
		return row, fmt.Errorf("demo: %w", err)
	}
	row.DownloadBytes, row.PullSeconds = pull.DownloadedBytes, pull.Seconds
	if err := compareSnapshots(pathsA, pathsB, id, m.SnapshotID); err != nil {
		return row, fmt.Errorf("demo: revision %d pulled wrong: %w", n, err)
	}
	row.Verified = true
	a.status("rev %d: verified (%s uploaded, %s downloaded)", n, cocoon.HumanSize(row.UploadBytes), cocoon.HumanSize(row.DownloadBytes))
	return row, nil
}

// demoFiles lists the snapshot's files and its base images.
func demoFiles(paths *cocoon.Paths, id string) ([]string, error) {
	dir, err := paths.SnapshotDir(id)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	infos, err := cocoon.SnapshotFiles(paths, id)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	var files []string
	for _, f := range infos {
		files = append(files, filepath.Join(dir, f.Name))
	}
	bases, err := filepath.Glob(filepath.Join(paths.CloudimgBlobDir, "*.qcow2"))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return append(files, bases...), nil
}

// compareSnapshots byte-compares every file of snapshot idA on node A with
// snapshot idB on node B, base images included.
func compareSnapshots(pathsA, pathsB *cocoon.Paths, idA, idB string) error {
	dirA, err := pathsA.SnapshotDir(idA)
	if err != nil {
		return err
	}
	dirB, err := pathsB.SnapshotDir(idB)
	if err != nil {
		return err
	}
	namesA, err := fileNames(dirA)
	if err != nil {
		return err
	}
	namesB, err := fileNames(dirB)
	if err != nil {
		return err
	}
	if !slices.Equal(namesA, namesB) {
		return fmt.Errorf("files %v, want %v", namesB, namesA)
	}
	for _, name := range namesA {
		if err := sameFile(filepath.Join(dirA, name), filepath.Join(dirB, name)); err != nil {
			return err
		}
	}
	bases, err := fileNames(pathsA.CloudimgBlobDir)
	if err != nil {
		return err
	}
	for _, name := range bases {
		if err := sameFile(filepath.Join(pathsA.CloudimgBlobDir, name), filepath.Join(pathsB.CloudimgBlobDir, name)); err != nil {
			return err
		}
	}
	return nil
}

func fileNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// sameFile compares two files byte for byte.
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer func() { _ = fa.Close() }()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer func() { _ = fb.Close() }()
	const bufSize = 1 << 20
	ba, bb := make([]byte, bufSize), make([]byte, bufSize)
	var off int64
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("%s differs from its source near offset %d", b, off)
		}
		off += int64(na)
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		switch {
		case errA != nil && !endA:
			return errA
		case errB != nil && !endB:
			return errB
		case endA != endB:
			return fmt.Errorf("%s differs in length from its source", b)
		case endA:
			return nil
		}
	}
}

func sha256File(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func (a *app) printDemo(res *demoResult) {
	a.printf("\n%s: %d revisions, %s memory, %s disk (seed %d)\n", res.Name, len(res.Revisions),
		cocoon.HumanSize(res.MemoryBytes), cocoon.HumanSize(res.DiskBytes), res.Seed)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = tw.Write([]byte("REVISION\tRAW\tWHOLE-FILE\tEPOCH-DEDUP UP\tEPOCH-DEDUP DOWN\tPUSH\tPULL\t\n"))
	row := func(label string, r demoRevision) {
		a.fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", label, cocoon.HumanSize(r.RawBytes), cocoon.HumanSize(r.WholeFileBytes),
			cocoon.HumanSize(r.UploadBytes), cocoon.HumanSize(r.DownloadBytes), seconds(r.PushSeconds), seconds(r.PullSeconds))
	}
	for _, r := range res.Revisions {
		row(r.Tag, r)
	}
	row("total", res.Total)
	_ = tw.Flush()
	a.printf("\nwhole-file = what Epoch v0.1.x sends: every changed file, in full (each way).\n")
	a.printf("epoch-dedup uploaded %s less and downloaded %s less than whole-file; every pulled file matched its source.\n",
		ratioString(res.UploadSavings), ratioString(res.DownloadSavings))
	if len(res.Revisions) > 1 {
		a.printf("from the second revision on: %s less up, %s less down.\n",
			ratioString(res.UploadSavingsAfterFirst), ratioString(res.DownloadSavingsAfterFirst))
	}
	a.printf("store: %s (%.1fs)\n", res.Store, res.Seconds)
}
