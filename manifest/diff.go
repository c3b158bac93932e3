package manifest

import (
	"fmt"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

// DiffWindow is how many base extents Diff looks ahead to realign after a
// mismatch. Wider finds longer deletions; cost per new extent grows with it.
const DiffWindow = 64

// Diff returns ops that turn base into next (Apply reproduces next exactly).
//
// It walks both sequences greedily, tracking each side's byte offset:
// equal extents become one OpCopy run. At a mismatch between base extent a
// and next extent b it looks DiffWindow extents ahead on both sides:
//
//   - b recurs a little later in base, followed by what follows b: the base
//     extents before it were deleted (OpSkip to it);
//   - a recurs a little later in next, followed by what follows a: b was
//     inserted (OpInsert);
//   - neither: the bytes were rewritten in place. Whichever extent ends
//     first (by offset) is consumed, an OpInsert of b or an OpSkip of a,
//     until both sides meet at a common boundary again.
//
// So a page rewrite costs its new extents, whatever the length of a run of
// them (a 2 MiB huge page is 512 pages); pages turned zero that merge into
// one hole cost one extent; an insertion that shifts content-defined chunks
// costs only the new chunks; growth or shrink costs the tail. A zero extent
// of equal length, or a page moved from elsewhere, recurs often: a lone
// match of one, not followed by its neighbour, realigns only where the two
// offsets have already drifted apart (content shifted).
func Diff(base, next *Recipe) []Op {
	a, b := base.Extents, next.Extents
	var ob opBuilder
	i, j := 0, 0
	var offA, offB uint64 // byte offsets of a[i] and b[j]
	for j < len(b) {
		if i < len(a) && a[i] == b[j] {
			n := 0
			for i+n < len(a) && j+n < len(b) && a[i+n] == b[j+n] {
				offA += a[i+n].Length
				offB += b[j+n].Length
				n++
			}
			ob.add(OpCopy, n)
			i += n
			j += n
			continue
		}
		if i == len(a) {
			ob.insert(b[j])
			offB += b[j].Length
			j++
			continue
		}
		p, strong := realign(a, i, b, j)
		inserted := !a[i].Zero && recursStrongly(b, j+1, a, i)
		switch {
		case p > i && (strong || (!inserted && offA != offB)):
			ob.add(OpSkip, p-i)
			for ; i < p; i++ {
				offA += a[i].Length
			}
		case inserted || offB+b[j].Length <= offA+a[i].Length:
			ob.insert(b[j])
			offB += b[j].Length
			j++
		default:
			ob.add(OpSkip, 1)
			offA += a[i].Length
			i++
		}
	}
	if i < len(a) {
		ob.add(OpSkip, len(a)-i)
	}
	return ob.ops
}

// realign returns the position p in a[i+1 : i+DiffWindow] where b[j]
// recurs, and whether the extent after it matches too; i if there is
// none worth skipping to (a lone zero extent never is).
func realign(a []Extent, i int, b []Extent, j int) (int, bool) {
	end := min(len(a), i+DiffWindow)
	weak := i
	for p := i + 1; p < end; p++ {
		if a[p] != b[j] {
			continue
		}
		if p+1 == len(a) || j+1 == len(b) || a[p+1] == b[j+1] {
			return p, true
		}
		if weak == i && !b[j].Zero {
			weak = p
		}
	}
	return weak, false
}

// recursStrongly reports whether a[i] occurs in b[from : from+DiffWindow]
// followed by a[i+1] (or at the end of either).
func recursStrongly(b []Extent, from int, a []Extent, i int) bool {
	for q := from; q < min(len(b), from+DiffWindow); q++ {
		if b[q] == a[i] && (q+1 == len(b) || i+1 == len(a) || b[q+1] == a[i+1]) {
			return true
		}
	}
	return false
}

// opBuilder appends ops, merging neighbours of the same code.
type opBuilder struct {
	ops []Op
}

func (ob *opBuilder) add(code OpCode, n int) {
	if k := len(ob.ops); k > 0 && ob.ops[k-1].Code == code {
		ob.ops[k-1].N += n
		return
	}
	ob.ops = append(ob.ops, Op{Code: code, N: n})
}

func (ob *opBuilder) insert(e Extent) {
	if k := len(ob.ops); k > 0 && ob.ops[k-1].Code == OpInsert {
		ob.ops[k-1].N++
		ob.ops[k-1].Extents = append(ob.ops[k-1].Extents, e)
		return
	}
	ob.ops = append(ob.ops, Op{Code: OpInsert, N: 1, Extents: []Extent{e}})
}

// Apply applies the patch obj to base, the recipe of obj.Base. The ops must
// consume base exactly, and the result must validate and have obj.Size.
func Apply(base *Recipe, obj *Object) (*Recipe, error) {
	if obj.Kind != KindPatch {
		return nil, fmt.Errorf("apply patch: %w: object kind %d is not a patch", ErrPatchMismatch, obj.Kind)
	}
	// First pass: check the ops against the base and size the result, so a
	// hostile patch cannot make us allocate more than MaxExtents.
	consumed, produced := 0, 0
	for k := range obj.Ops {
		op := &obj.Ops[k]
		if err := checkOp(op); err != nil {
			return nil, fmt.Errorf("apply patch: %w: op %d: %w", ErrPatchMismatch, k, err)
		}
		switch op.Code {
		case OpCopy:
			consumed += op.N
			produced += op.N
		case OpSkip:
			consumed += op.N
		case OpInsert:
			produced += op.N
		}
		if consumed > len(base.Extents) {
			return nil, fmt.Errorf("apply patch: %w: op %d runs past the base's %d extents", ErrPatchMismatch, k, len(base.Extents))
		}
		if produced > MaxExtents {
			return nil, fmt.Errorf("apply patch: %w: result exceeds %d extents", ErrPatchMismatch, MaxExtents)
		}
	}
	if consumed != len(base.Extents) {
		return nil, fmt.Errorf("apply patch: %w: ops consume %d of the base's %d extents", ErrPatchMismatch, consumed, len(base.Extents))
	}
	out := &Recipe{Size: obj.Size, Extents: make([]Extent, 0, produced)}
	i := 0
	for k := range obj.Ops {
		op := &obj.Ops[k]
		switch op.Code {
		case OpCopy:
			out.Extents = append(out.Extents, base.Extents[i:i+op.N]...)
			i += op.N
		case OpSkip:
			i += op.N
		case OpInsert:
			out.Extents = append(out.Extents, op.Extents...)
		}
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("apply patch: %w: %w", ErrPatchMismatch, err)
	}
	return out, nil
}

// Plan decides whether to store a new revision as a patch: only while the
// chain stays within MaxChainDepth (prevDepth is the base's depth), and
// only when the patch is less than half the full object, so that reading a
// chain never costs much more than reading one full object would.
func Plan(prevDepth, fullEncodedSize, patchEncodedSize int) (usePatch bool) {
	return prevDepth >= 0 && prevDepth+1 <= MaxChainDepth && 2*patchEncodedSize < fullEncodedSize
}

// Resolve returns the recipe of object id, loading the objects of its chain
// with load (which returns an object's bytes; it is the seam to the store).
// Each loaded object is checked against its id (BLAKE3), and each patch's
// depth must be its base's depth plus one, so a loop or an over-long chain
// stops after at most MaxChainDepth+1 loads.
func Resolve(id chunk.ID, load func(chunk.ID) ([]byte, error)) (*Recipe, error) {
	chain := make([]*Object, 0, 4)
	cur := id
	for {
		if len(chain) > MaxChainDepth {
			return nil, fmt.Errorf("resolve recipe %s: %w", id, ErrChainTooDeep)
		}
		data, err := load(cur)
		if err != nil {
			return nil, fmt.Errorf("resolve recipe %s: load %s: %w", id, cur, err)
		}
		if got := chunk.Sum(data); got != cur {
			return nil, fmt.Errorf("resolve recipe %s: %w: object %s hashes to %s", id, ErrRecipeChecksum, cur, got)
		}
		obj, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("resolve recipe %s: object %s: %w", id, cur, err)
		}
		if n := len(chain); n > 0 && chain[n-1].Depth != obj.Depth+1 {
			return nil, fmt.Errorf("resolve recipe %s: %w: object %s has depth %d under a patch of depth %d",
				id, ErrRecipeCorrupt, cur, obj.Depth, chain[n-1].Depth)
		}
		chain = append(chain, obj)
		if obj.Kind == KindFull {
			break
		}
		cur = obj.Base
	}
	rec := chain[len(chain)-1].Recipe
	for k := len(chain) - 2; k >= 0; k-- {
		var err error
		if rec, err = Apply(rec, chain[k]); err != nil {
			return nil, fmt.Errorf("resolve recipe %s: %w", id, err)
		}
	}
	return rec, nil
}
