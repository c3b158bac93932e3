package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/restic/chunker"
)

// testPol is restic's test polynomial: irreducible, degree 53.
const testPol = chunker.Pol(0x3DA3358B4DC173)

// makeImage returns size bytes of 4 KiB pages, zeroFrac of them zero and the
// rest random, like a guest memory image.
func makeImage(seed uint64, size int, zeroFrac float64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for off := 0; off < size; off += PageSize {
		page := b[off:min(off+PageSize, size)]
		if rng.Float64() < zeroFrac {
			continue
		}
		for i := range page {
			page[i] = byte(rng.Uint32())
		}
	}
	return b
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// collect splits r and checks the invariants every caller relies on: chunks
// cover [0,size) in order, zero chunks are zero and carry no data, data
// chunks match the file and their IDs.
func collect(t testing.TB, r io.ReaderAt, size int64, regions []Region, p Params, useBatch bool, opts ...SplitterOption) []Chunk {
	t.Helper()
	s, err := NewSplitter(r, size, regions, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var out []Chunk
	var off int64
	check := func(c Chunk) {
		if c.Offset != off {
			t.Fatalf("chunk at %d, want %d", c.Offset, off)
		}
		if c.Length <= 0 {
			t.Fatalf("chunk at %d has length %d", c.Offset, c.Length)
		}
		if c.Zero {
			if c.Data != nil || !c.ID.IsZero() {
				t.Fatalf("zero chunk at %d has data or id", c.Offset)
			}
		} else {
			if len(c.Data) != c.Length {
				t.Fatalf("chunk at %d: %d data bytes, length %d", c.Offset, len(c.Data), c.Length)
			}
			if c.ID != Sum(c.Data) {
				t.Fatalf("chunk at %d: wrong id", c.Offset)
			}
			if IsZero(c.Data) && p.Method == Fixed {
				t.Fatalf("fixed chunk at %d is all zero but not marked zero", c.Offset)
			}
			c.Data = bytes.Clone(c.Data)
		}
		off += int64(c.Length)
		out = append(out, c)
	}
	for {
		if useBatch {
			cs, err := s.NextBatch()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				check(c)
			}
			continue
		}
		c, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		check(c)
	}
	if off != size {
		t.Fatalf("chunks cover %d bytes, want %d", off, size)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after end: %v, want io.EOF", err)
	}
	return out
}

func reassemble(t testing.TB, chunks []Chunk, size int64) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	for _, c := range chunks {
		if c.Zero {
			out = append(out, make([]byte, c.Length)...)
		} else {
			out = append(out, c.Data...)
		}
	}
	return out
}

func TestSplitter_Cover(t *testing.T) {
	params := []Params{
		FixedPage(),
		{Method: Fixed, Size: 16 << 10},
		{Method: Fixed, Size: 12 << 10},
		SmallCDC(testPol),
		{Method: CDC, Min: 512, Avg: 1024, Max: 4096, Pol: testPol},
	}
	sizes := []int{0, 1, 4095, 4096, 4097, 3<<20 + 123}
	for _, p := range params {
		for _, size := range sizes {
			for _, zf := range []float64{0, 0.3, 1} {
				for _, batch := range []bool{false, true} {
					name := fmt.Sprintf("%s/size=%d/zero=%v/batch=%v", p, size, zf, batch)
					t.Run(name, func(t *testing.T) {
						data := makeImage(uint64(size), size, zf)
						chunks := collect(t, bytes.NewReader(data), int64(size), nil, p, batch,
							WithReadSize(64<<10), WithWorkers(2))
						if got := reassemble(t, chunks, int64(size)); !bytes.Equal(got, data) {
							t.Fatal("chunks do not reassemble to the input")
						}
					})
				}
			}
		}
	}
}

func TestSplitter_ZeroPages(t *testing.T) {
	// Pages 0,1 zero, 2 data, 3..5 zero, 6 data, 7 zero (last, short).
	data := make([]byte, 7*PageSize+100)
	data[2*PageSize+5] = 1
	data[6*PageSize] = 1
	tests := []struct {
		p    Params
		want []Chunk // Offset, Length, Zero only
	}{
		{FixedPage(), []Chunk{
			{Offset: 0, Length: 2 * PageSize, Zero: true},
			{Offset: 2 * PageSize, Length: PageSize},
			{Offset: 3 * PageSize, Length: 3 * PageSize, Zero: true},
			{Offset: 6 * PageSize, Length: PageSize},
			{Offset: 7 * PageSize, Length: 100, Zero: true},
		}},
		{SmallCDC(testPol), []Chunk{
			{Offset: 0, Length: 2 * PageSize, Zero: true},
			{Offset: 2 * PageSize, Length: PageSize},
			{Offset: 3 * PageSize, Length: 3 * PageSize, Zero: true},
			{Offset: 6 * PageSize, Length: PageSize},
			{Offset: 7 * PageSize, Length: 100, Zero: true},
		}},
		{Params{Method: Fixed, Size: 8192}, []Chunk{
			{Offset: 0, Length: 8192, Zero: true},
			{Offset: 8192, Length: 8192},
			{Offset: 16384, Length: 8192, Zero: true},
			{Offset: 24576, Length: PageSize + 100},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			got := collect(t, bytes.NewReader(data), int64(len(data)), nil, tt.p, false)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d chunks, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				if got[i].Offset != w.Offset || got[i].Length != w.Length || got[i].Zero != w.Zero {
					t.Errorf("chunk %d = {%d %d %v}, want {%d %d %v}", i, got[i].Offset, got[i].Length, got[i].Zero, w.Offset, w.Length, w.Zero)
				}
			}
		})
	}
}

// holeReader fails every read that touches a hole, proving holes are
// never read.
type holeReader struct {
	data    []byte
	regions []Region
	reads   int
}

func (h *holeReader) ReadAt(p []byte, off int64) (int, error) {
	h.reads++
	end := off + int64(len(p))
	for _, r := range h.regions {
		if off >= r.Offset && end <= r.End() {
			return copy(p, h.data[off:end]), nil
		}
	}
	return 0, fmt.Errorf("read [%d,%d) touches a hole", off, end)
}

func TestSplitter_HolesNeverRead(t *testing.T) {
	const size = 10<<20 + 777
	tests := []struct {
		name    string
		regions []Region
	}{
		{"all hole", []Region{}},
		{"aligned", []Region{{0, 1 << 20}, {4 << 20, 1 << 20}, {9 << 20, size - 9<<20}}},
		{"unaligned", []Region{{100, 5000}, {3<<20 + 17, 70000}, {size - 10, 10}}},
		{"adjacent and overlapping", []Region{{8192, 4096}, {4096, 4096}, {6000, 10000}}},
		{"one byte", []Region{{5 << 20, 1}}},
	}
	for _, tt := range tests {
		for _, p := range []Params{FixedPage(), {Method: Fixed, Size: 64 << 10}, SmallCDC(testPol)} {
			t.Run(tt.name+"/"+p.String(), func(t *testing.T) {
				data := make([]byte, size)
				rnd := randomBytes(7, size)
				for _, r := range tt.regions {
					copy(data[r.Offset:r.End()], rnd[r.Offset:r.End()])
				}
				merged, err := normalizeRegions(tt.regions, size)
				if err != nil {
					t.Fatal(err)
				}
				hr := &holeReader{data: data, regions: merged}
				chunks := collect(t, hr, size, tt.regions, p, true, WithReadSize(1<<20))
				if !bytes.Equal(reassemble(t, chunks, size), data) {
					t.Fatal("chunks do not reassemble to the input")
				}
				if len(tt.regions) == 0 && hr.reads != 0 {
					t.Fatalf("%d reads of an all-hole file", hr.reads)
				}
			})
		}
	}
}

func TestSplitter_ReadError(t *testing.T) {
	data := randomBytes(1, 1<<20)
	r := &holeReader{data: data, regions: []Region{{0, 1000}}}
	for _, p := range []Params{FixedPage(), SmallCDC(testPol)} {
		s, err := NewSplitter(r, int64(len(data)), nil, p)
		if err != nil {
			t.Fatal(err)
		}
		var gotErr error
		for gotErr == nil {
			_, gotErr = s.Next()
		}
		if errors.Is(gotErr, io.EOF) {
			t.Fatalf("%s: read error not reported", p)
		}
		if _, err := s.Next(); !errors.Is(err, gotErr) {
			t.Fatalf("%s: error not sticky: %v", p, err)
		}
	}
	// A file shorter than the size given is an error, not zeros.
	s, _ := NewSplitter(bytes.NewReader(data[:100]), 8192, nil, FixedPage())
	if _, err := s.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short file: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSplitter_CDCInsertShift(t *testing.T) {
	const size = 8 << 20
	orig := randomBytes(3, size)
	ids := func(data []byte) map[ID]int {
		m := map[ID]int{}
		for _, c := range collect(t, bytes.NewReader(data), int64(len(data)), nil, SmallCDC(testPol), false) {
			m[c.ID] += c.Length
		}
		return m
	}
	before := ids(orig)
	for _, at := range []int{0, 12345, size / 2, size - 1} {
		shifted := append(append(append([]byte{}, orig[:at]...), []byte("inserted bytes shift everything after them")...), orig[at:]...)
		after := ids(shifted)
		var shared, total int
		for id, n := range after {
			total += n
			if _, ok := before[id]; ok {
				shared += n
			}
		}
		// Only the chunk around the insert (at most ~2 chunks of max
		// 256 KiB) may change.
		if changed := total - shared; changed > 2*256<<10 {
			t.Errorf("insert at %d: %d of %d bytes in new chunks", at, changed, total)
		}
	}
	// Fixed chunking, by contrast, loses everything after the insert.
}

func TestSplitter_SameContentSameIDs(t *testing.T) {
	// A page that moves to another aligned offset keeps its ID (fixed).
	a := makeImage(5, 1<<20, 0.2)
	b := append(append([]byte{}, a[PageSize*10:]...), a[:PageSize*10]...)
	set := map[ID]bool{}
	for _, c := range collect(t, bytes.NewReader(a), int64(len(a)), nil, FixedPage(), false) {
		set[c.ID] = true
	}
	for _, c := range collect(t, bytes.NewReader(b), int64(len(b)), nil, FixedPage(), false) {
		if !c.Zero && !set[c.ID] {
			t.Fatalf("moved page at %d not found", c.Offset)
		}
	}
}

func TestNewSplitter_Errors(t *testing.T) {
	r := bytes.NewReader(nil)
	tests := []struct {
		name    string
		size    int64
		regions []Region
		p       Params
		opts    []SplitterOption
	}{
		{"bad params", 10, nil, Params{}, nil},
		{"negative size", -1, nil, FixedPage(), nil},
		{"region past end", 10, []Region{{5, 6}}, FixedPage(), nil},
		{"negative region", 10, []Region{{-1, 2}}, FixedPage(), nil},
		{"zero workers", 10, nil, FixedPage(), []SplitterOption{WithWorkers(0)}},
		{"tiny read size", 10, nil, FixedPage(), []SplitterOption{WithReadSize(100)}},
	}
	for _, tt := range tests {
		if _, err := NewSplitter(r, tt.size, tt.regions, tt.p, tt.opts...); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestDataRegions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 16 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	payload := randomBytes(9, 64<<10)
	for _, off := range []int64{4 << 20, 12 << 20} {
		if _, err := f.WriteAt(payload, off); err != nil {
			t.Fatal(err)
		}
	}
	regions, err := DataRegions(f, size)
	if err != nil {
		t.Fatal(err)
	}
	var covered int64
	for _, r := range regions {
		covered += r.Length
	}
	t.Logf("regions %v (%d of %d bytes)", regions, covered, size)
	for _, off := range []int64{4 << 20, 12 << 20} {
		in := false
		for _, r := range regions {
			in = in || (off >= r.Offset && off+int64(len(payload)) <= r.End())
		}
		if !in {
			t.Fatalf("data at %d not in regions %v", off, regions)
		}
	}
	// Whatever the file system reports, splitting with the regions must
	// reproduce the file.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chunks := collect(t, f, size, regions, FixedPage(), true)
	if !bytes.Equal(reassemble(t, chunks, size), data) {
		t.Fatal("sparse file does not reassemble")
	}
	if empty, err := DataRegions(f, 0); err != nil || len(empty) != 0 {
		t.Fatalf("size 0: %v %v", empty, err)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 63, 64, 65, 4095, 4096, 4097} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Fatalf("len %d: zero slice not zero", n)
		}
		for i := range n {
			b[i] = 0x80
			if IsZero(b) {
				t.Fatalf("len %d: byte %d set but IsZero", n, i)
			}
			b[i] = 0
		}
	}
}

func FuzzSplitter(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add(make([]byte, 3*PageSize+1), uint8(1))
	f.Add(append(make([]byte, PageSize), bytes.Repeat([]byte("abc"), 5000)...), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		params := []Params{
			FixedPage(),
			{Method: Fixed, Size: 8192},
			{Method: CDC, Min: 512, Avg: 1024, Max: 2048, Pol: testPol},
			SmallCDC(testPol),
		}
		p := params[int(mode)%len(params)]
		chunks := collect(t, bytes.NewReader(data), int64(len(data)), nil, p, mode&4 != 0, WithReadSize(PageSize*2))
		if !bytes.Equal(reassemble(t, chunks, int64(len(data))), data) {
			t.Fatal("chunks do not reassemble to the input")
		}
	})
}

func benchSplitter(b *testing.B, p Params, opts ...SplitterOption) {
	const size = 256 << 20
	data := makeImage(1, size, 0.3)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewSplitter(bytes.NewReader(data), size, nil, p, opts...)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := s.NextBatch()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Benchmarks use a 256 MiB image with 30% zero pages (the rest random).
func BenchmarkSplitter_Fixed4K(b *testing.B) {
	b.Run("workers=1", func(b *testing.B) { benchSplitter(b, FixedPage(), WithWorkers(1)) })
	b.Run("workers=default", func(b *testing.B) { benchSplitter(b, FixedPage()) })
}

func BenchmarkSplitter_CDC(b *testing.B) {
	dense := func(b *testing.B, p Params, opts ...SplitterOption) {
		// No zero pages: CDC runs over the whole file.
		const size = 256 << 20
		data := randomBytes(2, size)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			s, _ := NewSplitter(bytes.NewReader(data), size, nil, p, opts...)
			for {
				if _, err := s.NextBatch(); err != nil {
					break
				}
			}
		}
	}
	b.Run("16k-64k-256k/zero30", func(b *testing.B) { benchSplitter(b, SmallCDC(testPol)) })
	b.Run("16k-64k-256k/dense", func(b *testing.B) { dense(b, SmallCDC(testPol)) })
	b.Run("16k-64k-256k/dense/workers=1", func(b *testing.B) { dense(b, SmallCDC(testPol), WithWorkers(1)) })
	b.Run("restic/dense", func(b *testing.B) { dense(b, ResticCDC(testPol)) })
}

// BenchmarkSplitter_Params compares the candidate defaults on the same
// image (256 MiB, 30% scattered zero pages), default workers.
func BenchmarkSplitter_Params(b *testing.B) {
	for _, p := range []Params{
		FixedPage(),
		{Method: Fixed, Size: 16 << 10},
		{Method: CDC, Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10, Pol: testPol},
		SmallCDC(testPol),
		ResticCDC(testPol),
	} {
		b.Run(p.String(), func(b *testing.B) { benchSplitter(b, p) })
	}
}

func BenchmarkSum_4K(b *testing.B) {
	data := randomBytes(1, PageSize)
	b.SetBytes(PageSize)
	b.ReportAllocs()
	for b.Loop() {
		_ = Sum(data)
	}
}

// BenchmarkSummer_4K hashes the same page as BenchmarkSum_4K, four pages
// per kernel call.
func BenchmarkSummer_4K(b *testing.B) {
	data := randomBytes(1, 4*PageSize)
	var ids [4]ID
	b.SetBytes(4 * PageSize)
	b.ReportAllocs()
	for b.Loop() {
		var s Summer
		for i := range ids {
			s.Add(data[i*PageSize:(i+1)*PageSize], &ids[i])
		}
		s.Flush()
	}
}

func BenchmarkIsZero(b *testing.B) {
	zero := make([]byte, PageSize)
	data := randomBytes(1, PageSize)
	b.Run("zero", func(b *testing.B) {
		b.SetBytes(PageSize)
		b.ReportAllocs()
		for b.Loop() {
			_ = IsZero(zero)
		}
	})
	b.Run("random", func(b *testing.B) {
		b.SetBytes(PageSize)
		b.ReportAllocs()
		for b.Loop() {
			_ = IsZero(data)
		}
	})
}

// TestNormalizeRegions: regions already sorted, non-empty, apart and in
// bounds (DataRegions') come back as they are, not copied; any other list
// is copied into that form and the caller's is left alone.
func TestNormalizeRegions(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name string
		in   []Region
		want []Region
		same bool // returned without a copy
	}{
		{"normalized", []Region{{0, 10}, {20, 5}, {size - 1, 1}}, []Region{{0, 10}, {20, 5}, {size - 1, 1}}, true},
		{"touching", []Region{{0, 10}, {10, 5}}, []Region{{0, 15}}, false},
		{"unsorted", []Region{{20, 5}, {0, 10}}, []Region{{0, 10}, {20, 5}}, false},
		{"empty region", []Region{{0, 10}, {15, 0}, {20, 5}}, []Region{{0, 10}, {20, 5}}, false},
		{"overlapping", []Region{{0, 10}, {5, 10}}, []Region{{0, 15}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got, err := normalizeRegions(in, size)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if same := &got[0] == &in[0]; same != tt.same {
				t.Fatalf("returned the input itself: %v, want %v", same, tt.same)
			}
			if !slices.Equal(in, tt.in) {
				t.Fatalf("input changed to %v", in)
			}
		})
	}
	if _, err := normalizeRegions([]Region{{size - 1, 2}}, size); err == nil {
		t.Fatal("a region past the end was accepted")
	}
}
