package snapgen

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
)

// PageSize is the unit of guest memory and of Cocoon's sparse storage.
const PageSize = 4096

// textTokens is a read-only table of 8-byte tokens used for compressible,
// text-like page content. Fixed-width tokens let one PutUint64 emit a word,
// which keeps generation well above 1 GB/s; 256 tokens (one byte of
// randomness each) give zstd roughly 3-4x, about what text, code and kernel
// structures in real guest memory compress to.
var textTokens = buildTextTokens()

func buildTextTokens() [256]uint64 {
	words := [32]string{
		"kernel", "return", "struct", "buffer", "inode", "socket", "thread", "mutex",
		"page", "cache", "dentry", "alloc", "free", "error", "value", "index",
		"config", "http", "json", "null", "true", "false", "user", "root",
		"task", "queue", "timer", "event", "vma", "slab", "file", "0x7ffd",
	}
	seps := [8]string{" ", ",", ";", "\n", ".", "(", ")", "="}
	var t [256]uint64
	for i := range t {
		var b [8]byte
		for j := range b {
			b[j] = ' '
		}
		w := words[i%32]
		copy(b[:], w)
		b[min(len(w), 7)] = seps[i/32][0]
		t[i] = binary.LittleEndian.Uint64(b[:])
	}
	return t
}

// mix64 is the splitmix64 finalizer: a cheap bijection that spreads seeds so
// that neighbouring inputs (page 7, page 8) give unrelated outputs.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// derive makes an independent seed from a parent seed and a label or index.
func derive(seed, label uint64) uint64 { return mix64(seed ^ mix64(label)) }

// nonZero keeps 0 free to mean "zero page" in page tables.
func nonZero(s uint64) uint64 {
	if s == 0 {
		return 1
	}
	return s
}

// newRand returns the PRNG driving one revision step. PCG is seeded from both
// halves so that small seeds (1, 2, 3) still give unrelated streams.
func newRand(seed, label uint64) *rand.Rand {
	return rand.New(rand.NewPCG(derive(seed, label), derive(label, seed)))
}

// fillPage writes the 4 KiB page with content seed seed into dst[:PageSize].
// The first text bytes (a multiple of 8) are text-like tokens, the rest is
// incompressible. Content depends only on (seed, text), never on the page's
// position, so a page moved to another offset has identical bytes.
func fillPage(seed uint64, text int, dst []byte) {
	dst = dst[:PageSize]
	if seed == 0 {
		clear(dst)
		return
	}
	var r rand.PCG
	r.Seed(seed, seed^0x6a09e667f3bcc909)
	i := 0
	for i < text {
		v := r.Uint64()
		for k := 0; k < 8 && i < text; k++ {
			binary.LittleEndian.PutUint64(dst[i:], textTokens[byte(v)])
			v >>= 8
			i += 8
		}
	}
	for ; i < PageSize; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], r.Uint64())
	}
}

// textBytes turns a compressibility share into the text prefix length,
// rounded to the 8-byte token width.
func textBytes(compressibility float64) int {
	c := min(max(compressibility, 0), 1)
	return int(c*PageSize) / 8 * 8
}

// pageImage is the shared representation behind Memory, Overlay and the
// fixed files of a snapshot: a seed per 4 KiB page plus an optional header
// that overrides the first bytes of the image.
type pageImage struct {
	size   int64
	pages  []uint64 // content seed per page; 0 = zero page
	text   int      // text-like prefix of every non-zero page, in bytes
	header []byte   // overrides bytes [0, len(header)); nil for plain images
}

func pagesFor(size int64) int64 { return (size + PageSize - 1) / PageSize }

// pageBytes writes page i, as it appears in the image, into dst[:PageSize].
func (p *pageImage) pageBytes(i int64, dst []byte) {
	fillPage(p.pages[i], p.text, dst)
	if off := i * PageSize; off < int64(len(p.header)) {
		copy(dst[:PageSize], p.header[off:])
	}
}

// isHole reports whether page i is all zero and may be left as a hole.
func (p *pageImage) isHole(i int64) bool {
	return p.pages[i] == 0 && i*PageSize >= int64(len(p.header))
}

func (p *pageImage) readAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("snapgen: read at negative offset %d", off)
	}
	if off >= p.size {
		return 0, io.EOF
	}
	want := len(b)
	if rem := p.size - off; int64(want) > rem {
		b = b[:rem]
	}
	var scratch [PageSize]byte
	n := 0
	for n < len(b) {
		pos := off + int64(n)
		i, in := pos/PageSize, int(pos%PageSize)
		if in == 0 && len(b)-n >= PageSize {
			// Whole page: generate straight into the caller's buffer.
			p.pageBytes(i, b[n:])
			n += PageSize
			continue
		}
		p.pageBytes(i, scratch[:])
		n += copy(b[n:], scratch[in:])
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// writeBatch is how many pages are generated per Write: large enough to
// amortise the call, small enough to stay in L2.
const writeBatch = 64

func (p *pageImage) writeTo(w io.Writer) (int64, error) {
	buf := make([]byte, writeBatch*PageSize)
	var total int64
	for off := int64(0); off < p.size; {
		n := min(int64(len(buf)), p.size-off)
		if _, err := p.readAt(buf[:n], off); err != nil && err != io.EOF {
			return total, err
		}
		m, err := w.Write(buf[:n])
		total += int64(m)
		if err != nil {
			return total, fmt.Errorf("snapgen: write image bytes at %d: %w", off, err)
		}
		off += n
	}
	return total, nil
}

// writeFile writes the image to path. With sparse, all-zero pages are skipped
// so they stay holes, the way Cocoon stores memory-ranges; a final Truncate
// gives the file its full apparent size even when it ends in a hole.
func (p *pageImage) writeFile(path string, sparse bool) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("snapgen: create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("snapgen: close %s: %w", path, cerr)
		}
	}()
	if !sparse {
		if _, err := p.writeTo(f); err != nil {
			return fmt.Errorf("snapgen: write %s: %w", path, err)
		}
		return nil
	}
	buf := make([]byte, 0, writeBatch*PageSize)
	var runStart int64 // file offset of buf[0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := f.WriteAt(buf, runStart); err != nil {
			return fmt.Errorf("snapgen: write %s at %d: %w", path, runStart, err)
		}
		runStart += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	n := int64(len(p.pages))
	for i := range n {
		off := i * PageSize
		if p.isHole(i) {
			if err := flush(); err != nil {
				return err
			}
			runStart = off + PageSize
			continue
		}
		if len(buf) == cap(buf) {
			if err := flush(); err != nil {
				return err
			}
		}
		end := min(len(buf)+PageSize, len(buf)+int(p.size-off))
		page := buf[len(buf) : len(buf)+PageSize]
		p.pageBytes(i, page)
		buf = buf[:end]
	}
	if err := flush(); err != nil {
		return err
	}
	if err := f.Truncate(p.size); err != nil {
		return fmt.Errorf("snapgen: set size of %s: %w", path, err)
	}
	return nil
}

// newPagesSince lists the pages of p whose content seed occurs nowhere in
// prev: the pages a perfect page-granular content-addressed store would
// have to upload. Sorting a copy (8 bytes a page) is cheaper than a map.
func (p *pageImage) newPagesSince(prev *pageImage) []int64 {
	seen := make([]uint64, 0, len(prev.pages))
	for _, s := range prev.pages {
		if s != 0 {
			seen = append(seen, s)
		}
	}
	slices.Sort(seen)
	var out []int64
	for i, s := range p.pages {
		if s != 0 && !inSorted(seen, s) {
			out = append(out, int64(i))
		}
	}
	return out
}

// pick selects exactly k of the n candidates for which ok returns true, each
// subset equally likely (Knuth's selection sampling), calling take for each.
// Exact counts make revision sizes predictable for tests and benchmarks.
func pick(r *rand.Rand, n int64, k int64, ok func(i int64) bool, take func(i int64)) {
	var avail int64
	for i := range n {
		if ok(i) {
			avail++
		}
	}
	k = min(k, avail)
	for i := int64(0); i < n && k > 0; i++ {
		if !ok(i) {
			continue
		}
		if r.Int64N(avail) < k {
			take(i)
			k--
		}
		avail--
	}
}

func fraction(f float64, n int64) int64 {
	f = min(max(f, 0), 1)
	return int64(f*float64(n) + 0.5)
}

func inSorted(s []uint64, v uint64) bool {
	_, ok := slices.BinarySearch(s, v)
	return ok
}
