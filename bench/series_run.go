package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/restic/chunker"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// Store names in reports.
const (
	storeFolder = "folder"
	storeS3     = "s3"
)

// storeRun is one store under test for one series: a pushing node and a
// pulling node, each with its own client (so their byte counters stay
// apart) and its own node-local index.
type storeRun struct {
	name       string
	pushClient *objectstore.Client
	pullClient *objectstore.Client
	push       *registry.Registry
	pull       *registry.Registry
	nodeDir    string // where the pulling node keeps the revision it holds
	newClient  func() (*objectstore.Client, error)
	cleanup    func()
}

func openStores(ctx context.Context, cfg Config, work, series string) ([]*storeRun, error) {
	var runs []*storeRun
	storeDir := filepath.Join(work, "store")
	folder := func() (*objectstore.Client, error) { return objectstore.NewLocal(storeDir) }
	r, err := newStoreRun(storeFolder, work, cfg.Series.Polynomial, folder, func() {})
	if err != nil {
		return nil, err
	}
	runs = append(runs, r)
	if cfg.S3 != nil {
		s3cfg := *cfg.S3
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			closeStores(runs)
			return nil, err
		}
		// A fresh prefix per series: each series starts from an empty store,
		// so its first revision is a true cold push.
		s3cfg.Prefix = s3cfg.EffectivePrefix() + "bench-" + hex.EncodeToString(b[:]) + "-" + series + "/"
		s3 := func() (*objectstore.Client, error) { return objectstore.New(&s3cfg) }
		r, err := newStoreRun(storeS3, work, cfg.Series.Polynomial, s3, nil)
		if err != nil {
			closeStores(runs)
			return nil, err
		}
		r.cleanup = func() { cleanPrefix(context.WithoutCancel(ctx), r.pushClient) }
		runs = append(runs, r)
	}
	return runs, nil
}

func newStoreRun(name, work string, pol uint64, newClient func() (*objectstore.Client, error), cleanup func()) (*storeRun, error) {
	pc, err := newClient()
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", name, err)
	}
	lc, err := newClient()
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", name, err)
	}
	return &storeRun{
		name:       name,
		pushClient: pc,
		pullClient: lc,
		push:       registry.New(pc, registry.WithCacheDir(filepath.Join(work, name+"-cache-push")), registry.WithPolynomial(chunker.Pol(pol))),
		pull:       registry.New(lc, registry.WithCacheDir(filepath.Join(work, name+"-cache-pull")), registry.WithPolynomial(chunker.Pol(pol))),
		nodeDir:    filepath.Join(work, name+"-node"),
		newClient:  newClient,
		cleanup:    cleanup,
	}, nil
}

func closeStores(runs []*storeRun) {
	for _, r := range runs {
		_ = r.push.Close()
		_ = r.pull.Close()
		r.cleanup()
	}
}

// runSeries pushes and pulls every revision of src and measures the
// baselines beside each step. work is removed at the end.
func runSeries(ctx context.Context, cfg Config, restic, work string, src revisionSource) (*SeriesResult, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()
	stores, err := openStores(ctx, cfg, work, src.name)
	if err != nil {
		return nil, err
	}
	defer closeStores(stores)
	var rs *resticRun
	if restic != "" {
		if rs, err = newResticRun(ctx, restic, filepath.Join(work, "restic")); err != nil {
			return nil, err
		}
	}
	sr := &SeriesResult{Name: src.name, Description: src.desc}
	repo := "bench/" + src.name
	var prevSigs map[string]fileSig
	prevDir := ""
	var lastDir string
	for n := range src.revs {
		dir := filepath.Join(work, fmt.Sprintf("rev-%d", n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create revision dir: %w", err)
		}
		cfg.Log(fmt.Sprintf("  revision %d: generating", n))
		revDir, lb, err := src.write(n, dir)
		if err != nil {
			return nil, fmt.Errorf("revision %d: generate: %w", n, err)
		}
		files, err := regularFiles(revDir)
		if err != nil {
			return nil, fmt.Errorf("revision %d: %w", n, err)
		}
		rev := RevisionResult{N: n, LowerBound: lb, Files: len(files)}
		for _, f := range files {
			rev.Bytes += f.size
		}
		cfg.Log(fmt.Sprintf("  revision %d: baselines (%s in %d files)", n, humanBytes(rev.Bytes), len(files)))
		if rev.ReadSeconds, err = readOnce(files); err != nil {
			return nil, fmt.Errorf("revision %d: read once: %w", n, err)
		}
		sigs, err := scanFiles(files, cfg.PartSize)
		if err != nil {
			return nil, fmt.Errorf("revision %d: whole-file and zstd-parts baselines: %w", n, err)
		}
		rev.WholeFile, rev.ZstdParts = wholeFileAndParts(sigs, prevSigs)
		if rs != nil {
			t, err := rs.backup(ctx, files)
			if err != nil {
				return nil, fmt.Errorf("revision %d: restic backup: %w", n, err)
			}
			rev.Restic = &t
		}
		for _, st := range stores {
			cfg.Log(fmt.Sprintf("  revision %d: %s store", n, st.name))
			sRev, err := runStoreRevision(ctx, st, repo, n, files, sigs)
			if err != nil {
				return nil, fmt.Errorf("revision %d: %s store: %w", n, st.name, err)
			}
			rev.Stores = append(rev.Stores, sRev)
		}
		sr.Revisions = append(sr.Revisions, rev)
		prevSigs = sigs
		// Keep only the revision the next one is compared with.
		if prevDir != "" {
			_ = os.RemoveAll(prevDir)
		}
		prevDir, lastDir = dir, revDir
	}

	// Cold: a node holding nothing pulls the last revision.
	files, err := regularFiles(lastDir)
	if err != nil {
		return nil, err
	}
	for _, st := range stores {
		cfg.Log("  cold pull of the last revision: " + st.name + " store")
		cp, err := coldPull(ctx, st, repo, work, files, prevSigs)
		if err != nil {
			return nil, fmt.Errorf("cold pull: %s store: %w", st.name, err)
		}
		sr.Cold = append(sr.Cold, cp)
	}
	if rs != nil {
		cfg.Log("  restic restore of the last revision")
		t, err := rs.restore(ctx, filepath.Join(work, "restic-restore"))
		if err != nil {
			return nil, fmt.Errorf("restic restore: %w", err)
		}
		sr.ResticRestore = &t
	}
	return sr, nil
}

// runStoreRevision pushes revision n, pulls it onto the node holding
// revision n-1, and times plain PUTs and GETs of the same files.
func runStoreRevision(ctx context.Context, st *storeRun, repo string, n int, files []fileEntry, sigs map[string]fileSig) (StoreRevision, error) {
	out := StoreRevision{Store: st.name}
	dir := filepath.Dir(files[0].path)

	before := st.pushClient.Stats()
	var ts registry.TransferStats
	t, err := measure(func() error {
		var err error
		_, ts, err = st.push.PushDir(ctx, dir, repo, defaultRepoTag, nil)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("push: %w", err)
	}
	after := st.pushClient.Stats()
	t.Bytes = after.BytesUp - before.BytesUp
	out.Push, out.PushRequests, out.NewBytes = t, requests(after)-requests(before), ts.NewBytes

	before = st.pullClient.Stats()
	t, err = measure(func() error {
		_, _, err := st.pull.PullDir(ctx, repo, defaultRepoTag, st.nodeDir, nil)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("pull: %w", err)
	}
	after = st.pullClient.Stats()
	t.Bytes = after.BytesDown - before.BytesDown
	out.Pull, out.PullRequests = t, requests(after)-requests(before)
	if err := verifyPulled(st.nodeDir, sigs); err != nil {
		return out, fmt.Errorf("pull: %w", err)
	}

	prefix := fmt.Sprintf("plain/%d/", n)
	if out.PlainPut, err = plainPut(ctx, st.pushClient, prefix, files); err != nil {
		return out, fmt.Errorf("plain PUT baseline: %w", err)
	}
	if out.PlainGet, err = plainGet(ctx, st.pullClient, prefix, files, filepath.Join(filepath.Dir(st.nodeDir), st.name+"-get")); err != nil {
		return out, fmt.Errorf("plain GET baseline: %w", err)
	}
	for _, f := range files {
		if err := st.pushClient.Delete(ctx, prefix+f.name); err != nil {
			return out, fmt.Errorf("remove plain object: %w", err)
		}
	}
	return out, nil
}

// coldPull pulls the last revision with a fresh client, cache and target:
// a node that never held any revision.
func coldPull(ctx context.Context, st *storeRun, repo, work string, files []fileEntry, sigs map[string]fileSig) (ColdPull, error) {
	cp := ColdPull{Store: st.name}
	client, err := st.newClient()
	if err != nil {
		return cp, err
	}
	reg := registry.New(client, registry.WithCacheDir(filepath.Join(work, st.name+"-cache-cold")))
	defer func() { _ = reg.Close() }()
	target := filepath.Join(work, st.name+"-cold")
	defer func() { _ = os.RemoveAll(target) }()
	t, err := measure(func() error {
		_, _, err := reg.PullDir(ctx, repo, defaultRepoTag, target, nil)
		return err
	})
	if err != nil {
		return cp, err
	}
	t.Bytes = client.Stats().BytesDown
	cp.Pull = t
	if err := verifyPulled(target, sigs); err != nil {
		return cp, err
	}
	// The same bytes as plain objects, fetched by a plain GET each.
	prefix := "plain/cold/"
	if _, err := plainPut(ctx, client, prefix, files); err != nil {
		return cp, err
	}
	if cp.PlainGet, err = plainGet(ctx, client, prefix, files, filepath.Join(work, st.name+"-cold-get")); err != nil {
		return cp, err
	}
	for _, f := range files {
		_ = client.Delete(ctx, prefix+f.name)
	}
	return cp, nil
}

// plainPut uploads each file as one object: what a whole-file store costs.
func plainPut(ctx context.Context, c *objectstore.Client, prefix string, files []fileEntry) (Timed, error) {
	start := time.Now()
	var total int64
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err != nil {
			return Timed{}, err
		}
		_, err = c.Put(ctx, prefix+f.name, fh, f.size, objectstore.PutOptions{})
		_ = fh.Close()
		if err != nil {
			return Timed{}, fmt.Errorf("put %s: %w", f.name, err)
		}
		total += f.size
	}
	return Timed{Seconds: time.Since(start).Seconds(), Bytes: total}, nil
}

// plainGet downloads each object into a file and syncs it, as a pull must:
// a GET into io.Discard would flatter the baseline.
func plainGet(ctx context.Context, c *objectstore.Client, prefix string, files []fileEntry, dir string) (Timed, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Timed{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	start := time.Now()
	var total int64
	for _, f := range files {
		n, err := getInto(ctx, c, prefix+f.name, filepath.Join(dir, f.name))
		if err != nil {
			return Timed{}, fmt.Errorf("get %s: %w", f.name, err)
		}
		total += n
	}
	return Timed{Seconds: time.Since(start).Seconds(), Bytes: total}, nil
}

func getInto(ctx context.Context, c *objectstore.Client, key, path string) (int64, error) {
	rc, err := c.Get(ctx, key, 0, -1)
	if err != nil {
		return 0, err
	}
	defer func() { _ = rc.Close() }()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// verifyPulled checks that dir holds exactly the revision's content: a
// benchmark of a pull that writes wrong bytes would measure nothing.
func verifyPulled(dir string, sigs map[string]fileSig) error {
	for name, want := range sigs {
		got, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("verify pulled %s: %w", name, err)
		}
		if got != want.sha {
			return fmt.Errorf("verify pulled %s: content differs from the pushed revision", name)
		}
	}
	return nil
}

func requests(s objectstore.Stats) int64 { return s.PutRequests + s.GetRequests + s.OtherRequests }
