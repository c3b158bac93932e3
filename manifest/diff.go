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
// It walks both sequences greedily: equal extents become one OpCopy run; at
// a mismatch it looks for next's extent within the following DiffWindow base
// extents and, if found, skips to it (a deletion or the old half of a
// replaced run); otherwise the extent is inserted. A scattered page rewrite
// thus costs insert+skip, an insertion that shifts content-defined chunks
// costs only the new chunks, and growth or shrink costs the tail. A realign
// target must also match the following extent unless it is a data extent:
// zero extents of equal length recur often and would realign falsely.
func Diff(base, next *Recipe) []Op {
	a, b := base.Extents, next.Extents
	var ob opBuilder
	i, j := 0, 0
	for j < len(b) {
		if i < len(a) && a[i] == b[j] {
			n := 1
			for i+n < len(a) && j+n < len(b) && a[i+n] == b[j+n] {
				n++
			}
			ob.add(OpCopy, n)
			i += n
			j += n
			continue
		}
		if p := realign(a, i, b, j); p > i {
			ob.add(OpSkip, p-i)
			i = p
			continue
		}
		ob.insert(b[j])
		j++
	}
	if i < len(a) {
		ob.add(OpSkip, len(a)-i)
	}
	return ob.ops
}

// realign returns the position p in a[i+1 : i+DiffWindow] where b[j]
// recurs, or i if there is none worth skipping to.
func realign(a []Extent, i int, b []Extent, j int) int {
	end := min(len(a), i+DiffWindow)
	weak := i
	for p := i + 1; p < end; p++ {
		if a[p] != b[j] {
			continue
		}
		if p+1 == len(a) || j+1 == len(b) || a[p+1] == b[j+1] {
			return p
		}
		if weak == i && !b[j].Zero {
			weak = p
		}
	}
	return weak
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
