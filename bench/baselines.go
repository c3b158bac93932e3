package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cocoonstack/epoch-dedup/internal/snapgen"
)

// fileEntry is one regular file of a revision folder.
type fileEntry struct {
	name string
	path string
	size int64
}

func regularFiles(dir string) ([]fileEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list revision %s: %w", dir, err)
	}
	var out []fileEntry
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("list revision %s: %w", dir, err)
		}
		out = append(out, fileEntry{name: e.Name(), path: filepath.Join(dir, e.Name()), size: fi.Size()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("revision %s has no regular files", dir)
	}
	return out, nil
}

// readOnce times one sequential read of every file: the floor of any tool
// that has to look at all the bytes.
func readOnce(files []fileEntry) (float64, error) {
	buf := make([]byte, 1<<20)
	start := time.Now()
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err != nil {
			return 0, err
		}
		_, err = io.CopyBuffer(io.Discard, fh, buf)
		_ = fh.Close()
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", f.name, err)
		}
	}
	return time.Since(start).Seconds(), nil
}

// fileSig is what the whole-file and zstd-parts baselines remember of a
// file between revisions.
type fileSig struct {
	sha   string
	size  int64
	parts []partSig
}

type partSig struct {
	sha  [32]byte
	zstd int64 // zstd size of the part at the default level
}

// scanFiles hashes each file whole and in parts of partSize, and zstd-
// compresses each part on its own (klauspost zstd, default level), as
// Cocoon's later format stores them.
func scanFiles(files []fileEntry, partSize int64) (map[string]fileSig, error) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = enc.Close() }()
	out := make(map[string]fileSig, len(files))
	buf := make([]byte, 1<<20)
	for _, f := range files {
		sig, err := scanFile(f, partSize, enc, buf)
		if err != nil {
			return nil, err
		}
		out[f.name] = sig
	}
	return out, nil
}

func scanFile(f fileEntry, partSize int64, enc *zstd.Encoder, buf []byte) (fileSig, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return fileSig{}, err
	}
	defer func() { _ = fh.Close() }()
	whole := sha256.New()
	sig := fileSig{size: f.size}
	for off := int64(0); off < f.size || off == 0; off += partSize {
		n := min(partSize, f.size-off)
		part := sha256.New()
		var zc countWriter
		enc.Reset(&zc)
		w := io.MultiWriter(whole, part, enc)
		if _, err := io.CopyBuffer(w, io.LimitReader(fh, n), buf); err != nil {
			return fileSig{}, fmt.Errorf("read %s: %w", f.name, err)
		}
		if err := enc.Close(); err != nil {
			return fileSig{}, fmt.Errorf("zstd %s: %w", f.name, err)
		}
		var ps partSig
		copy(ps.sha[:], part.Sum(nil))
		ps.zstd = zc.n
		sig.parts = append(sig.parts, ps)
		if n <= 0 {
			break
		}
	}
	sig.sha = hex.EncodeToString(whole.Sum(nil))
	return sig, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// wholeFileAndParts returns what the two baselines upload for a revision
// given the previous one: Epoch v0.1.x sends every file whose sha256
// changed, in full; the zstd-parts format sends the compressed parts whose
// content changed (a part index the previous file lacked counts as changed).
func wholeFileAndParts(cur, prev map[string]fileSig) (whole, parts int64) {
	for name, s := range cur {
		p, had := prev[name]
		if had && p.sha == s.sha {
			continue
		}
		whole += s.size
		for i, ps := range s.parts {
			if had && i < len(p.parts) && p.parts[i].sha == ps.sha {
				continue
			}
			parts += ps.zstd
		}
	}
	return whole, parts
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// zstdOfOverlayPages is zstdOfPages for an overlay: the zstd size (default
// level, page by page) of the pages the store has never seen.
func zstdOfOverlayPages(o *snapgen.Overlay, pages []int64) (int64, error) {
	return zstdOfPageSource(o.PageBytes, pages)
}

// zstdOfInserted is the lower bound of a tar revision: the zstd size of
// the bytes cur inserted into prev (of the whole stream when prev is nil).
// The inserted runs are found by walking both streams side by side: at
// the first mismatch, cur holds an insertion of unknown length, found by
// resynchronising on the next 4 KiB of prev.
func zstdOfInserted(prev, cur *snapgen.Tar) (int64, error) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = enc.Close() }()
	if prev == nil {
		var zc countWriter
		enc.Reset(&zc)
		if _, err := cur.WriteTo(enc); err != nil {
			return 0, err
		}
		if err := enc.Close(); err != nil {
			return 0, err
		}
		return zc.n, nil
	}
	inserted, err := insertedBytes(prev, cur)
	if err != nil {
		return 0, err
	}
	return int64(len(enc.EncodeAll(inserted, nil))), nil
}

// insertedBytes returns the bytes of cur that are not in prev, for a cur
// made from prev by insertions only (snapgen.Tar.Next).
func insertedBytes(prev, cur *snapgen.Tar) ([]byte, error) {
	const block = 64 << 10
	const probe = snapgen.PageSize
	ob, nb := make([]byte, block), make([]byte, block)
	var out []byte
	var i, j int64 // offsets in prev and cur
	for j < cur.Size() {
		if i >= prev.Size() {
			rest := make([]byte, cur.Size()-j)
			if _, err := cur.ReadAt(rest, j); err != nil && err != io.EOF {
				return nil, err
			}
			return append(out, rest...), nil
		}
		on, err := prev.ReadAt(ob, i)
		if err != nil && err != io.EOF {
			return nil, err
		}
		nn, err := cur.ReadAt(nb, j)
		if err != nil && err != io.EOF {
			return nil, err
		}
		m := min(on, nn)
		k := 0
		for k < m && ob[k] == nb[k] {
			k++
		}
		i, j = i+int64(k), j+int64(k)
		if k == m {
			continue
		}
		// Mismatch at (i, j): find where the next probe bytes of prev
		// reappear in cur. Insertions are far shorter than the search window
		// grows to, and prev's content is unique (seeded random pages).
		want := make([]byte, min(probe, prev.Size()-i))
		if _, err := prev.ReadAt(want, i); err != nil && err != io.EOF {
			return nil, err
		}
		skip, err := findForward(cur, j, want)
		if err != nil {
			return nil, err
		}
		run := make([]byte, skip)
		if _, err := cur.ReadAt(run, j); err != nil && err != io.EOF {
			return nil, err
		}
		out = append(out, run...)
		j += skip
	}
	return out, nil
}

// findForward returns the distance from off to the first occurrence of
// want in s at or after off.
func findForward(s *snapgen.Tar, off int64, want []byte) (int64, error) {
	const window = 8 << 20
	buf := make([]byte, window+len(want))
	for base := off; base < s.Size(); base += window {
		n, err := s.ReadAt(buf, base)
		if err != nil && err != io.EOF {
			return 0, err
		}
		if k := bytes.Index(buf[:n], want); k >= 0 {
			return base - off + int64(k), nil
		}
	}
	return 0, fmt.Errorf("tar revision is not an insertion-only edit of the previous one")
}

// resticRun is a restic repository beside the series: backups of each
// revision from one fixed path, as a VM's snapshot folder would be.
type resticRun struct {
	bin  string
	repo string
	src  string
	env  []string
}

func lookRestic() (string, error) { return exec.LookPath("restic") }

func resticVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return bin
	}
	return strings.TrimSpace(string(out))
}

func newResticRun(ctx context.Context, bin, dir string) (*resticRun, error) {
	r := &resticRun{bin: bin, repo: filepath.Join(dir, "repo"), src: filepath.Join(dir, "src")}
	r.env = append(os.Environ(), "RESTIC_REPOSITORY="+r.repo, "RESTIC_PASSWORD=bench",
		"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"), "RESTIC_PROGRESS_FPS=0.1")
	if _, err := r.run(ctx, "init"); err != nil {
		return nil, fmt.Errorf("restic init: %w", err)
	}
	return r, nil
}

func (r *resticRun) run(ctx context.Context, args ...string) (Timed, error) {
	resetPeakRSS()
	start := time.Now()
	cmd := exec.CommandContext(ctx, r.bin, args...) //nolint:gosec // r.bin is restic, from PATH or the operator's Config.Restic; args are built here
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Timed{}, fmt.Errorf("restic %s: %w: %s", strings.Join(args, " "), err, lastLine(out))
	}
	return Timed{Seconds: time.Since(start).Seconds(), MaxRSSKB: maxRSS(cmd)}, nil
}

// backup links the revision's files into the fixed source folder and backs
// it up; Bytes is what the repository grew by.
func (r *resticRun) backup(ctx context.Context, files []fileEntry) (Timed, error) {
	if err := os.RemoveAll(r.src); err != nil {
		return Timed{}, err
	}
	if err := os.MkdirAll(r.src, 0o755); err != nil {
		return Timed{}, err
	}
	for _, f := range files {
		if err := linkOrCopy(f.path, filepath.Join(r.src, f.name)); err != nil {
			return Timed{}, err
		}
	}
	before := dirSize(r.repo)
	t, err := r.run(ctx, "backup", "--host", "bench", r.src)
	if err != nil {
		return Timed{}, err
	}
	t.Bytes = dirSize(r.repo) - before
	return t, nil
}

// restore restores the latest snapshot into target (cold: restic 0.14
// always writes every file in full).
func (r *resticRun) restore(ctx context.Context, target string) (Timed, error) {
	defer func() { _ = os.RemoveAll(target) }()
	t, err := r.run(ctx, "restore", "latest", "--target", target)
	if err != nil {
		return Timed{}, err
	}
	t.Bytes = dirSize(target)
	return t, nil
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// measure runs fn and returns its wall time and, on Linux, the process's
// peak resident memory during fn: the kernel's high-water mark (VmHWM) is
// reset through /proc/self/clear_refs after the Go heap has been returned
// to the OS, so the figure is what fn needed on top of the idle process.
func measure(fn func() error) (Timed, error) {
	runtime.GC()
	debug.FreeOSMemory()
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	start := time.Now()
	err := fn()
	t := Timed{Seconds: time.Since(start).Seconds()}
	if reset {
		t.MaxRSSKB = procStatusKB("VmHWM")
	}
	return t, err
}

// resetPeakRSS makes this process's peak RSS its current (idle) RSS just
// before it starts a child whose maxrss is measured. Go starts children
// with vfork: the child runs in this process's memory until exec, and the
// kernel then counts this process's high-water mark as the child's own
// (ru_maxrss). Without the reset a restic child would be charged with the
// benchmark's own earlier peak.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// rssMethod says how measure gets its memory figure, for the report.
func rssMethod() string {
	if runtime.GOOS != "linux" {
		return "not measured (needs Linux /proc)"
	}
	return fmt.Sprintf("in-process peak RSS (VmHWM, reset via /proc/self/clear_refs after debug.FreeOSMemory before each operation; the idle benchmark process is about %s of it); restic: its child process's rusage maxrss, which includes the benchmark process's idle RSS (Go starts children by vfork)",
		humanBytes(procStatusKB("VmRSS")<<10))
}

func procStatusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		return n
	}
	return 0
}
