package snapgen

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
)

// TarSpec describes the first revision of an export-style stream.
type TarSpec struct {
	Size int64
	Seed uint64
}

// tarText: exported file systems are a mix of text and binaries.
const tarText = PageSize / 2

// tarSeg is a run of bytes copied from a seeded stream: bytes
// [off, off+n) of stream, where a stream is 4 KiB blocks made like pages.
type tarSeg struct {
	stream uint64
	off    int64
	n      int64
}

// Tar is one revision of an export-style stream (as `tar c` or `docker
// export` would produce) in which revisions insert bytes at arbitrary,
// non-page-aligned offsets, shifting everything after them: fixed-size
// chunking loses alignment there, content-defined chunking does not.
// It is held as a list of segments of seeded streams, so its memory cost
// grows with the number of insertions, not with its size. It is immutable.
type Tar struct {
	segs   []tarSeg
	starts []int64 // starts[i] = offset of segs[i] in the stream
	size   int64
}

// NewTar returns the first revision described by spec.
func NewTar(spec TarSpec) *Tar {
	size := max(spec.Size, 0)
	var segs []tarSeg
	if size > 0 {
		segs = []tarSeg{{stream: nonZero(derive(spec.Seed, 0x746172)), n: size}}
	}
	return newTar(segs)
}

func newTar(segs []tarSeg) *Tar {
	t := &Tar{segs: segs, starts: make([]int64, len(segs))}
	for i, s := range segs {
		t.starts[i] = t.size
		t.size += s.n
	}
	return t
}

// Next returns the next revision: t with insertions runs of insertSize
// never-seen bytes inserted at uniformly random offsets. t is not modified.
func (t *Tar) Next(insertions int, insertSize int, seed uint64) *Tar {
	r := newRand(seed, 0x696e73) // "ins"
	if insertions <= 0 || insertSize <= 0 {
		return newTar(slices.Clone(t.segs))
	}
	at := make([]int64, insertions)
	for i := range at {
		at[i] = r.Int64N(t.size + 1)
	}
	slices.Sort(at)
	segs := make([]tarSeg, 0, len(t.segs)+2*insertions)
	k := 0
	insert := func() {
		segs = append(segs, tarSeg{stream: nonZero(r.Uint64()), n: int64(insertSize)})
		k++
	}
	for i, s := range t.segs {
		start := t.starts[i]
		for k < len(at) && at[k] < start+s.n {
			cut := at[k] - start // bytes of s that precede the insertion
			if cut > 0 {
				segs = append(segs, tarSeg{stream: s.stream, off: s.off, n: cut})
				s.off += cut
				s.n -= cut
				start += cut
			}
			insert()
		}
		segs = append(segs, s)
	}
	for k < len(at) { // insertions at the very end
		insert()
	}
	return newTar(segs)
}

// Size returns the stream length in bytes.
func (t *Tar) Size() int64 { return t.size }

// ReaderAt returns a reader that generates the stream bytes on the fly. It is
// safe for concurrent use.
func (t *Tar) ReaderAt() io.ReaderAt { return t }

// ReadAt implements io.ReaderAt.
func (t *Tar) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("snapgen: read tar at negative offset %d", off)
	}
	if off >= t.size {
		return 0, io.EOF
	}
	want := len(b)
	b = b[:min(int64(want), t.size-off)]
	i := sort.Search(len(t.starts), func(i int) bool { return t.starts[i] > off }) - 1
	var scratch [PageSize]byte
	n := 0
	for n < len(b) {
		s := t.segs[i]
		in := off + int64(n) - t.starts[i] // offset inside the segment
		for in < s.n && n < len(b) {
			pos := s.off + in // offset inside the stream
			blk, bo := pos/PageSize, pos%PageSize
			fillPage(derive(s.stream, uint64(blk)), tarText, scratch[:])
			c := copy(b[n:], scratch[bo:min(PageSize, bo+s.n-in)])
			n += c
			in += int64(c)
		}
		i++
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// WriteTo writes the whole stream to w.
func (t *Tar) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, writeBatch*PageSize)
	var total int64
	for off := int64(0); off < t.size; {
		n, err := t.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return total, err
		}
		m, err := w.Write(buf[:n])
		total += int64(m)
		if err != nil {
			return total, fmt.Errorf("snapgen: write tar bytes at %d: %w", off, err)
		}
		off += int64(n)
	}
	return total, nil
}

// WriteFile writes the stream to path. A stream has no zero runs, so there is
// no sparse variant.
func (t *Tar) WriteFile(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write tar stream: create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write tar stream: close %s: %w", path, cerr)
		}
	}()
	if _, err := t.WriteTo(f); err != nil {
		return fmt.Errorf("write tar stream to %s: %w", path, err)
	}
	return nil
}
