package index

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// randomID returns a chunk id as a chunk's would be: a BLAKE3 digest.
func randomID(rng *rand.Rand) chunk.ID {
	return chunk.Sum(binary.LittleEndian.AppendUint64(nil, rng.Uint64()))
}

// TestTreeFilter fills filters of several sizes to their capacity: no id
// added is ruled out, and about 0.1 % of ids never added pass.
func TestTreeFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1000, 40000, 200000} {
		f := newTreeFilter(n)
		added := make([]chunk.ID, f.limit)
		for i := range added {
			added[i] = randomID(rng)
			f.add(&added[i])
		}
		if f.full() {
			t.Fatalf("n=%d: full at its limit %d", n, f.limit)
		}
		for i := range added {
			if !f.mayContain(&added[i]) {
				t.Fatalf("n=%d: id %d of %d ruled out", n, i, len(added))
			}
		}
		const probes = 100000
		fp := 0
		for range probes {
			id := randomID(rng)
			if f.mayContain(&id) {
				fp++
			}
		}
		if rate := float64(fp) / probes; rate > 0.003 {
			t.Errorf("n=%d (limit %d, %d bits): false positive rate %.4f", n, f.limit, f.mask+1, rate)
		}
		id := randomID(rng)
		f.add(&id)
		if !f.full() {
			t.Errorf("n=%d: not full past its limit", n)
		}
	}
}

// TestDB_CheckFilter: Check reports a chunk the lookup filter would rule
// out of the tree (lookups would miss it).
func TestDB_CheckFilter(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "index.db"), &Options{MergeThreshold: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	id := randomID(rng)
	if err := db.AddPack(randomID(rng), 8192, []PackEntry{{ID: id, BlockLength: 100, Length: 4096}}); err != nil {
		t.Fatal(err)
	}
	db.treeMisses.Store(filterAfterMisses)
	if err := db.LookupMany([]chunk.ID{id}, func(_ int, _ Location, ok bool) {
		if !ok {
			t.Fatal("chunk not found")
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatalf("clean db: %v", err)
	}
	db.mu.Lock()
	if db.filter == nil {
		db.mu.Unlock()
		t.Fatal("no filter after a lookup")
	}
	db.filter = newTreeFilter(0)
	db.mu.Unlock()
	err = db.Check()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "lookup filter") {
		t.Fatalf("Check = %v, want ErrCorrupt naming the lookup filter", err)
	}
}

// TestDB_NoMergeBehindMerge: entries that cross the threshold while a
// merge is under way wait for the next merge instead of starting one right
// behind it, until twice the threshold is pending; they answer lookups
// throughout.
func TestDB_NoMergeBehindMerge(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "index.db"), &Options{MergeThreshold: 100, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	ingest := func(name string, n int) []chunk.ID {
		t.Helper()
		p := PackRecord{Pack: randomID(rng), Size: int64(n) * 4096}
		ids := make([]chunk.ID, n)
		for i := range ids {
			ids[i] = randomID(rng)
			p.Entries = append(p.Entries, PackEntry{ID: ids[i], BlockOffset: uint64(i) * 4096, BlockLength: 4096, Length: 4096})
		}
		if err := db.Ingest(name, []PackRecord{p}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	pending := func() int {
		t.Helper()
		_, total, _, err := db.pendingPacks()
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	db.merging.Store(true) // as if another goroutine merged
	ids := ingest("a", 150)
	if got := pending(); got != 150 {
		t.Fatalf("%d entries pending past the threshold during a merge, want 150", got)
	}
	for i, id := range ids {
		if _, ok, err := db.Lookup(id); err != nil || !ok {
			t.Fatalf("entry %d: ok=%v err=%v", i, ok, err)
		}
	}
	ids = append(ids, ingest("b", 60)...)
	if got := pending(); got != 0 {
		t.Fatalf("%d entries pending at twice the threshold, want a merge", got)
	}
	if err := db.LookupMany(ids, func(i int, _ Location, ok bool) {
		if !ok {
			t.Fatalf("entry %d lost", i)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDB_FilterAfterMisses: lookups that find their chunks (a pull, a
// push of content the store holds) never scan the tree for a filter;
// lookups that miss in the tree (a push of new content) build one once
// they have missed filterAfterMisses times.
func TestDB_FilterAfterMisses(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "index.db"), &Options{MergeThreshold: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	built := func() bool {
		db.mu.RLock()
		defer db.mu.RUnlock()
		return db.filter != nil
	}
	rng := rand.New(rand.NewPCG(7, 8))
	p := PackRecord{Pack: randomID(rng), Size: 1 << 20}
	var held []chunk.ID
	for i := range 1000 {
		id := randomID(rng)
		held = append(held, id)
		p.Entries = append(p.Entries, PackEntry{ID: id, BlockOffset: uint64(i) * 100, BlockLength: 100, Length: 4096})
	}
	if err := db.AddPack(p.Pack, p.Size, p.Entries); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := db.LookupMany(held, func(i int, _ Location, ok bool) {
			if !ok {
				t.Fatalf("held chunk %d not found", i)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if built() {
		t.Fatal("filter built by lookups that all found their chunks")
	}
	fresh := make([]chunk.ID, filterAfterMisses)
	for i := range fresh {
		fresh[i] = randomID(rng)
	}
	ignore := func(int, Location, bool) {}
	if err := db.LookupMany(fresh, ignore); err != nil {
		t.Fatal(err)
	}
	if built() {
		t.Fatal("filter built before the lookups that reached the threshold")
	}
	if err := db.LookupManyAccept(fresh[:1], func(chunk.ID) bool { return true }, ignore); err != nil || !built() {
		t.Fatalf("after %d misses: err=%v, filter built %v", filterAfterMisses, err, built())
	}
}
