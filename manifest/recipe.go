package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

const (
	// MaxExtents bounds the extents of one recipe (and the extents a patch
	// may copy, skip or insert): 2^26 extents is 256 GiB at 4 KiB chunks.
	// Decoders check it before they allocate.
	MaxExtents = 1 << 26

	// MaxDataLength bounds a data extent: chunks are stored with 32-bit
	// lengths in packs. Zero extents are bounded only by the file size.
	MaxDataLength = math.MaxUint32
)

// ErrInvalidRecipe is returned by Recipe.Validate and by the encoders for a
// recipe or op list that breaks the rules documented on Recipe.
var ErrInvalidRecipe = errors.New("invalid recipe")

// Extent is a run of bytes of a file: either a hole / all-zero run (Zero,
// ID is the zero value) or the content of one chunk (ID).
//
// Length is 64-bit because a hole can be longer than 4 GiB (a mostly empty
// 10 GiB cow.raw is one zero extent); data extents are at most MaxDataLength.
type Extent struct {
	Length uint64
	Zero   bool
	ID     chunk.ID
}

// Recipe lists a file's extents in order. A valid recipe is canonical: no
// zero-length extents and no two adjacent zero extents, so equal files cut
// the same way give byte-identical recipe objects, hence the same object id.
type Recipe struct {
	Size    int64
	Extents []Extent
}

// AppendData appends a data extent of length bytes with the given chunk id.
func (r *Recipe) AppendData(id chunk.ID, length uint32) {
	if length == 0 {
		return
	}
	r.Extents = append(r.Extents, Extent{Length: uint64(length), ID: id})
	r.Size += int64(length)
}

// AppendZero appends length zero bytes, merging with a preceding zero
// extent so the recipe stays canonical.
func (r *Recipe) AppendZero(length uint64) {
	if length == 0 {
		return
	}
	r.Size += int64(length)
	if n := len(r.Extents); n > 0 && r.Extents[n-1].Zero {
		r.Extents[n-1].Length += length
		return
	}
	r.Extents = append(r.Extents, Extent{Length: length, Zero: true})
}

// Validate checks that the extents sum to Size, that none is empty, that
// zero extents carry no id and are never adjacent, and that data extents
// have an id and fit MaxDataLength.
func (r *Recipe) Validate() error {
	if r.Size < 0 || r.Size >= MaxSize {
		return fmt.Errorf("%w: size %d out of range [0, 2^50)", ErrInvalidRecipe, r.Size)
	}
	if len(r.Extents) > MaxExtents {
		return fmt.Errorf("%w: %d extents, limit %d", ErrInvalidRecipe, len(r.Extents), MaxExtents)
	}
	var sum uint64
	size := uint64(r.Size)
	for i := range r.Extents {
		e := &r.Extents[i]
		if err := checkExtent(e); err != nil {
			return fmt.Errorf("%w: extent %d: %w", ErrInvalidRecipe, i, err)
		}
		if e.Zero && i > 0 && r.Extents[i-1].Zero {
			return fmt.Errorf("%w: extent %d: adjacent zero extents", ErrInvalidRecipe, i)
		}
		if e.Length > size-sum {
			return fmt.Errorf("%w: extent %d ends past size %d", ErrInvalidRecipe, i, r.Size)
		}
		sum += e.Length
	}
	if sum != size {
		return fmt.Errorf("%w: extents sum to %d, size is %d", ErrInvalidRecipe, sum, r.Size)
	}
	return nil
}

// Equal reports whether r and o describe the same extents and size.
func (r *Recipe) Equal(o *Recipe) bool {
	if r.Size != o.Size || len(r.Extents) != len(o.Extents) {
		return false
	}
	for i := range r.Extents {
		if r.Extents[i] != o.Extents[i] {
			return false
		}
	}
	return true
}

// contentKeyTag starts every content key, so a key can never equal the ID
// of a chunk or an object; bump it if the key's layout changes.
const contentKeyTag = "epoch-dedup content key v1\x00"

// ContentKey names the bytes r describes: BLAKE3 over the size and every
// extent (zero flag, length, chunk ID). Two valid recipes with the same key
// describe the same bytes, because chunk IDs are BLAKE3 of their content;
// the same bytes cut differently get different keys, so a key is a cache
// key, never an identity check. The node index maps a key to the SHA-256
// it once computed for those bytes, which lets a push of content it has
// seen skip hashing the file again.
func (r *Recipe) ContentKey() chunk.ID {
	const rec = 1 + 8 + chunk.IDSize
	h := chunk.NewHasher()
	// Records go to the hasher 64 KiB at a time, not one Write per
	// 41-byte extent (a 1 GiB memory file has 131072 of them).
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, contentKeyTag...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Size))
	for i := range r.Extents {
		if len(buf)+rec > cap(buf) {
			_, _ = h.Write(buf)
			buf = buf[:0]
		}
		e := &r.Extents[i]
		if e.Zero {
			buf = append(buf, 0)
		} else {
			buf = append(buf, 1)
		}
		buf = binary.BigEndian.AppendUint64(buf, e.Length)
		buf = append(buf, e.ID[:]...)
	}
	_, _ = h.Write(buf)
	return h.Sum()
}

// checkExtent checks one extent on its own (no context).
func checkExtent(e *Extent) error {
	switch {
	case e.Length == 0:
		return errors.New("zero length")
	case e.Length >= MaxSize:
		return fmt.Errorf("length %d out of range", e.Length)
	case e.Zero && !e.ID.IsZero():
		return errors.New("zero extent carries an id")
	case !e.Zero && e.ID.IsZero():
		return errors.New("data extent without id")
	case !e.Zero && e.Length > MaxDataLength:
		return fmt.Errorf("data extent of %d bytes, limit %d", e.Length, uint64(MaxDataLength))
	}
	return nil
}
