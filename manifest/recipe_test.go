package manifest_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
	"github.com/cocoonstack/epoch-dedup/manifest"
)

// unit is one chunk of a synthetic file: content 0 is a zero run.
type unit struct {
	length  uint32
	content uint64
}

func idOf(content uint64) chunk.ID {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], content)
	return chunk.Sum(b[:])
}

func recipeOf(units []unit) *manifest.Recipe {
	r := new(manifest.Recipe)
	for _, u := range units {
		if u.content == 0 {
			r.AppendZero(uint64(u.length))
		} else {
			r.AppendData(idOf(u.content), u.length)
		}
	}
	return r
}

// pages returns n 4 KiB units, about zeroShare of them zero.
func pages(rng *rand.Rand, n int, zeroShare float64) []unit {
	us := make([]unit, n)
	for i := range us {
		us[i] = unit{length: 4096}
		if rng.Float64() >= zeroShare {
			us[i].content = rng.Uint64() | 1
		}
	}
	return us
}

// scatter rewrites share of the units at random places (a new page, or
// sometimes a page turned to zero).
func scatter(rng *rand.Rand, us []unit, share float64) []unit {
	out := append([]unit(nil), us...)
	n := int(float64(len(out)) * share)
	for range n {
		i := rng.IntN(len(out))
		if rng.IntN(4) == 0 {
			out[i].content = 0
		} else {
			out[i].content = rng.Uint64() | 1
		}
	}
	return out
}

func roundTrip(t testing.TB, base, next *manifest.Recipe) (full, patch []byte) {
	t.Helper()
	full, err := manifest.EncodeFull(base)
	if err != nil {
		t.Fatalf("encode full: %v", err)
	}
	obj, err := manifest.Decode(full)
	if err != nil {
		t.Fatalf("decode full: %v", err)
	}
	if obj.Kind != manifest.KindFull || !obj.Recipe.Equal(base) {
		t.Fatal("full object does not round-trip")
	}
	ops := manifest.Diff(base, next)
	patch, err = manifest.EncodePatch(chunk.Sum(full), 1, next.Size, ops)
	if err != nil {
		t.Fatalf("encode patch: %v", err)
	}
	pobj, err := manifest.Decode(patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	if pobj.Base != chunk.Sum(full) || pobj.Depth != 1 || pobj.Size != next.Size {
		t.Fatalf("patch header: %+v", pobj)
	}
	got, err := manifest.Apply(base, pobj)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !got.Equal(next) {
		t.Fatal("Apply(base, Diff(base, next)) != next")
	}
	return full, patch
}

// TestDiff_Property checks Apply(base, Decode(EncodePatch(Diff(base, next)))) == next
// over random pairs covering each kind of change.
func TestDiff_Property(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randUnits := func(n int) []unit {
		us := make([]unit, n)
		for i := range us {
			us[i] = unit{length: uint32(1 + rng.IntN(8192))}
			if rng.IntN(3) > 0 {
				us[i].content = uint64(rng.IntN(50)) + 1 // small alphabet: repeats
			}
		}
		return us
	}
	mutations := map[string]func([]unit) []unit{
		"same":    func(us []unit) []unit { return us },
		"scatter": func(us []unit) []unit { return scatter(rng, us, 0.1) },
		"insert": func(us []unit) []unit {
			at := rng.IntN(len(us) + 1)
			return append(append(append([]unit(nil), us[:at]...), randUnits(1+rng.IntN(20))...), us[at:]...)
		},
		"delete": func(us []unit) []unit {
			if len(us) == 0 {
				return us
			}
			at := rng.IntN(len(us))
			end := min(len(us), at+1+rng.IntN(100))
			return append(append([]unit(nil), us[:at]...), us[end:]...)
		},
		"grow":   func(us []unit) []unit { return append(append([]unit(nil), us...), randUnits(rng.IntN(50))...) },
		"shrink": func(us []unit) []unit { return us[:rng.IntN(len(us)+1)] },
		"zero":   func(us []unit) []unit { return []unit{{length: 1 << 20}} },
		"empty":  func([]unit) []unit { return nil },
		"other":  func(us []unit) []unit { return randUnits(len(us)) },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			for iter := range 200 {
				baseUnits := randUnits(rng.IntN(300))
				if iter%17 == 0 {
					baseUnits = nil
				}
				nextUnits := mutate(baseUnits)
				// several mutations in a row, as between real revisions
				if iter%3 == 0 {
					nextUnits = mutate(scatter(rng, nextUnits, 0.02))
				}
				roundTrip(t, recipeOf(baseUnits), recipeOf(nextUnits))
			}
		})
	}
}

// TestDiff_Cost measures the encoded cost of a 1 GiB file of 4 KiB pages,
// half zero, and of a revision rewriting 2% of its pages at random places.
// The numbers are quoted in doc.go.
func TestDiff_Cost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 262144-extent recipe")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	baseUnits := pages(rng, 262144, 0.5)
	base := recipeOf(baseUnits)
	next := recipeOf(scatter(rng, baseUnits, 0.02))
	full, patch := roundTrip(t, base, next)
	nextFull, err := manifest.EncodeFull(next)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 GiB, %d extents: full %d bytes, 2%% scattered change: patch %d bytes (%.1f%% of full %d)",
		len(base.Extents), len(full), len(patch), 100*float64(len(patch))/float64(len(nextFull)), len(nextFull))
	if !manifest.Plan(0, len(nextFull), len(patch)) {
		t.Fatal("Plan refuses the patch")
	}
	if len(patch)*10 > len(nextFull) {
		t.Fatalf("patch %d bytes is more than 10%% of full %d", len(patch), len(nextFull))
	}
	// An unchanged file costs an empty-ish patch (and in practice the same
	// recipe id is reused without writing anything).
	_, same := roundTrip(t, base, base)
	if len(same) > 128 {
		t.Fatalf("patch of an unchanged file is %d bytes", len(same))
	}
}

// TestDiff_Shapes checks the ops Diff finds for the changes snapshots
// see, by how many new extents the patch carries: never more than the
// change, whatever DiffWindow is.
func TestDiff_Shapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := pages(rng, 8192, 0.3)
	fresh := func() uint64 { return rng.Uint64() | 1 }
	tests := []struct {
		name      string
		change    func([]unit) []unit
		maxInsert int
	}{
		{"run of 64 rewritten pages", func(us []unit) []unit {
			for i := 1000; i < 1064; i++ {
				us[i].content = fresh()
			}
			return us
		}, 64},
		{"run of 512 rewritten pages (a 2 MiB huge page)", func(us []unit) []unit {
			for i := 4096; i < 4608; i++ {
				us[i].content = fresh()
			}
			return us
		}, 512},
		{"three runs of 100, 65 and 300", func(us []unit) []unit {
			for _, r := range [][2]int{{100, 200}, {2000, 2065}, {6000, 6300}} {
				for i := r[0]; i < r[1]; i++ {
					us[i].content = fresh()
				}
			}
			return us
		}, 465},
		{"run of 200 pages turned zero", func(us []unit) []unit {
			for i := 3000; i < 3200; i++ {
				us[i].content = 0
			}
			return us
		}, 1},
		// A page moved into a hole splits it: the page and two holes.
		{"pages moved from elsewhere", func(us []unit) []unit {
			for k := range 40 {
				us[500+100*k] = us[7000+k]
			}
			return us
		}, 3 * 40},
		{"insertion shifting the rest", func(us []unit) []unit {
			ins := make([]unit, 40)
			for i := range ins {
				ins[i] = unit{length: 4096 + uint32(i), content: fresh()}
			}
			return append(us[:4001:4001], append(ins, us[4001:]...)...)
		}, 40},
		{"deletion of 50", func(us []unit) []unit {
			return append(us[:5001:5001], us[5051:]...)
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, n := recipeOf(base), recipeOf(tt.change(append([]unit(nil), base...)))
			ops := manifest.Diff(b, n)
			inserted := 0
			for _, op := range ops {
				if op.Code == manifest.OpInsert {
					inserted += op.N
				}
			}
			if inserted > tt.maxInsert {
				t.Fatalf("patch inserts %d extents, the change has at most %d", inserted, tt.maxInsert)
			}
			roundTrip(t, b, n) // Apply reproduces next
		})
	}
	// A shift by more than DiffWindow extents is beyond what Diff looks
	// for: the patch is still exact, only large, and Plan then stores the
	// full recipe instead.
	shifted := recipeOf(append(append([]unit(nil), base[:4000]...), base[4300:]...))
	roundTrip(t, recipeOf(base), shifted)
}

func TestDecode_Errors(t *testing.T) {
	r := recipeOf([]unit{{4096, 1}, {8192, 0}, {100, 2}})
	full, err := manifest.EncodeFull(r)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), full...)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, manifest.ErrRecipeTruncated},
		{"magic prefix", full[:2], manifest.ErrRecipeTruncated},
		{"magic", []byte("{\"json\": true}......................"), manifest.ErrRecipeMagic},
		{"header only", full[:16], manifest.ErrRecipeTruncated},
		{"truncated", full[:len(full)-1], manifest.ErrRecipeTruncated},
		{"trailing", append(append([]byte(nil), full...), 0), manifest.ErrRecipeCorrupt},
		{"version", flip(4), manifest.ErrRecipeVersion},
		{"kind", flip(5), manifest.ErrRecipeCorrupt},
		{"body bit", flip(20), manifest.ErrRecipeChecksum},
		{"crc bit", flip(len(full) - 1), manifest.ErrRecipeChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := manifest.Decode(tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRecipe_Validate(t *testing.T) {
	id := idOf(1)
	tests := []struct {
		name string
		r    manifest.Recipe
		ok   bool
	}{
		{"empty", manifest.Recipe{}, true},
		{"ok", manifest.Recipe{Size: 10, Extents: []manifest.Extent{{Length: 4, ID: id}, {Length: 6, Zero: true}}}, true},
		{"big hole", manifest.Recipe{Size: 1 << 40, Extents: []manifest.Extent{{Length: 1 << 40, Zero: true}}}, true},
		{"sum short", manifest.Recipe{Size: 11, Extents: []manifest.Extent{{Length: 10, Zero: true}}}, false},
		{"sum long", manifest.Recipe{Size: 9, Extents: []manifest.Extent{{Length: 10, Zero: true}}}, false},
		{"zero length", manifest.Recipe{Size: 0, Extents: []manifest.Extent{{Length: 0, Zero: true}}}, false},
		{"adjacent zero", manifest.Recipe{Size: 2, Extents: []manifest.Extent{{Length: 1, Zero: true}, {Length: 1, Zero: true}}}, false},
		{"zero with id", manifest.Recipe{Size: 1, Extents: []manifest.Extent{{Length: 1, Zero: true, ID: id}}}, false},
		{"data without id", manifest.Recipe{Size: 1, Extents: []manifest.Extent{{Length: 1}}}, false},
		{"data too long", manifest.Recipe{Size: 1 << 33, Extents: []manifest.Extent{{Length: 1 << 33, ID: id}}}, false},
		{"overflow", manifest.Recipe{Size: 1, Extents: []manifest.Extent{{Length: 1<<64 - 1, Zero: true}, {Length: 2, ID: id}}}, false},
		{"negative", manifest.Recipe{Size: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.r.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if _, err := manifest.EncodeFull(&tests[3].r); !errors.Is(err, manifest.ErrInvalidRecipe) {
		t.Errorf("EncodeFull of an invalid recipe: %v", err)
	}
}

func TestApply_Mismatch(t *testing.T) {
	base := recipeOf([]unit{{4096, 1}, {4096, 0}, {4096, 3}})
	baseID := chunk.Sum([]byte("base"))
	tests := []struct {
		name string
		size int64
		ops  []manifest.Op
	}{
		{"past base", 12288, []manifest.Op{{Code: manifest.OpCopy, N: 4}}},
		{"base left over", 8192, []manifest.Op{{Code: manifest.OpCopy, N: 2}}},
		{"wrong size", 100, []manifest.Op{{Code: manifest.OpCopy, N: 3}}},
		{"adjacent zeros", 8192 + 1, []manifest.Op{
			{Code: manifest.OpSkip, N: 1},
			{Code: manifest.OpInsert, N: 1, Extents: []manifest.Extent{{Length: 1, Zero: true}}},
			{Code: manifest.OpCopy, N: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := manifest.EncodePatch(baseID, 1, tt.size, tt.ops)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := manifest.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := manifest.Apply(base, obj); !errors.Is(err, manifest.ErrPatchMismatch) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if _, err := manifest.EncodePatch(baseID, manifest.MaxChainDepth+1, 0, nil); !errors.Is(err, manifest.ErrChainTooDeep) {
		t.Fatalf("depth: %v", err)
	}
	if _, err := manifest.EncodePatch(baseID, 1, 0, []manifest.Op{{Code: manifest.OpCopy}}); !errors.Is(err, manifest.ErrInvalidRecipe) {
		t.Fatalf("empty op: %v", err)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		depth, full, patch int
		want               bool
	}{
		{0, 1000, 100, true},
		{15, 1000, 100, true},
		{16, 1000, 100, false},
		{0, 1000, 500, false},
		{0, 1000, 499, true},
		{-1, 1000, 1, false},
	}
	for _, tt := range tests {
		if got := manifest.Plan(tt.depth, tt.full, tt.patch); got != tt.want {
			t.Errorf("Plan(%d, %d, %d) = %v", tt.depth, tt.full, tt.patch, got)
		}
	}
}

// TestResolve builds a chain of MaxChainDepth patches and reads it back,
// then checks that a tampered object and an over-deep chain are refused.
func TestResolve(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	store := map[chunk.ID][]byte{}
	load := func(id chunk.ID) ([]byte, error) {
		b, ok := store[id]
		if !ok {
			return nil, fmt.Errorf("object %s not found", id)
		}
		return b, nil
	}
	units := pages(rng, 2000, 0.3)
	prev := recipeOf(units)
	data, err := manifest.EncodeFull(prev)
	if err != nil {
		t.Fatal(err)
	}
	prevID := chunk.Sum(data)
	store[prevID] = data
	for depth := 1; depth <= manifest.MaxChainDepth; depth++ {
		units = scatter(rng, units, 0.02)
		next := recipeOf(units)
		data, err := manifest.EncodePatch(prevID, depth, next.Size, manifest.Diff(prev, next))
		if err != nil {
			t.Fatal(err)
		}
		id := chunk.Sum(data)
		store[id] = data
		got, err := manifest.Resolve(id, load)
		if err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		if !got.Equal(next) {
			t.Fatalf("depth %d: resolved recipe differs", depth)
		}
		prev, prevID = next, id
	}
	// A patch whose base is itself at depth 16 can be encoded only at 17: refused.
	if _, err := manifest.EncodePatch(prevID, manifest.MaxChainDepth+1, prev.Size, nil); !errors.Is(err, manifest.ErrChainTooDeep) {
		t.Fatalf("over-deep patch: %v", err)
	}
	// Tampering is caught by the id check.
	store[prevID] = append([]byte(nil), store[prevID]...)
	store[prevID][20] ^= 1
	if _, err := manifest.Resolve(prevID, load); !errors.Is(err, manifest.ErrRecipeChecksum) {
		t.Fatalf("tampered: %v", err)
	}
}

func BenchmarkDiff(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	baseUnits := pages(rng, 262144, 0.5)
	base := recipeOf(baseUnits)
	next := recipeOf(scatter(rng, baseUnits, 0.02))
	b.ReportAllocs()
	for b.Loop() {
		manifest.Diff(base, next)
	}
}

func BenchmarkEncodeFull(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := recipeOf(pages(rng, 262144, 0.5))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		data, err := manifest.EncodeFull(r)
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.ReportMetric(float64(n), "bytes/object")
}

func BenchmarkDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	data, err := manifest.EncodeFull(recipeOf(pages(rng, 262144, 0.5)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := manifest.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRecipe_ContentKey(t *testing.T) {
	base := func() *manifest.Recipe {
		r := &manifest.Recipe{}
		r.AppendData(idOf(1), 4096)
		r.AppendZero(8192)
		r.AppendData(idOf(2), 4096)
		return r
	}
	// Enough extents that the key's records span several hasher writes.
	long := func() *manifest.Recipe {
		r := &manifest.Recipe{}
		for i := range uint64(5000) {
			r.AppendData(idOf(i+1), 4096)
		}
		return r
	}
	tests := []struct {
		name   string
		change func(r *manifest.Recipe)
		same   bool
	}{
		{"unchanged", func(*manifest.Recipe) {}, true},
		{"other chunk", func(r *manifest.Recipe) { r.Extents[2].ID = idOf(3) }, false},
		{"other length", func(r *manifest.Recipe) { r.Extents[0].Length, r.Size = 4095, r.Size-1 }, false},
		{"longer hole", func(r *manifest.Recipe) { r.Extents[1].Length, r.Size = 12288, r.Size+4096 }, false},
		{"data where the hole was", func(r *manifest.Recipe) { r.Extents[1] = manifest.Extent{Length: 8192, ID: idOf(4)} }, false},
		{"extents swapped", func(r *manifest.Recipe) { r.Extents[0], r.Extents[2] = r.Extents[2], r.Extents[0] }, false},
		{"extra extent", func(r *manifest.Recipe) { r.AppendData(idOf(5), 1) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.change(r)
			if got := r.ContentKey() == base().ContentKey(); got != tt.same {
				t.Errorf("same key = %v, want %v", got, tt.same)
			}
		})
	}
	l1, l2 := long(), long()
	if l1.ContentKey() != l2.ContentKey() {
		t.Error("key of a long recipe is not stable")
	}
	l2.Extents[4999].ID = idOf(1)
	if l1.ContentKey() == l2.ContentKey() {
		t.Error("last extent of a long recipe does not change its key")
	}
	if base().ContentKey() == chunk.Sum(nil) || (&manifest.Recipe{}).ContentKey() == chunk.Sum(nil) {
		t.Error("a content key equals a chunk id")
	}
}

// TestWriteFull checks that the streamed encoding is byte for byte the one
// EncodeFull returns, for recipes that fit one zstd block and ones that
// need hundreds of buffered writes.
func TestWriteFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	tests := []struct {
		name string
		r    *manifest.Recipe
	}{
		{"empty", &manifest.Recipe{}},
		{"one hole", recipeOf([]unit{{4096, 0}})},
		{"small", recipeOf([]unit{{4096, 1}, {8192, 0}, {100, 2}})},
		{"memory file", recipeOf(pages(rng, 1<<17, 0.5))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := manifest.EncodeFull(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.CreateTemp(t.TempDir(), "recipe")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			id, size, err := manifest.WriteFull(f, tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || size != int64(len(want)) || id != chunk.Sum(want) {
				t.Fatalf("WriteFull: %d bytes (said %d), id %s; EncodeFull: %d bytes, id %s", len(got), size, id, len(want), chunk.Sum(want))
			}
			obj, err := manifest.Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			if !obj.Recipe.Equal(tt.r) {
				t.Fatal("decoded recipe differs")
			}
		})
	}
	if _, _, err := manifest.WriteFull(nil, &manifest.Recipe{Size: 1}); !errors.Is(err, manifest.ErrInvalidRecipe) {
		t.Errorf("WriteFull of an invalid recipe: %v", err)
	}
}
