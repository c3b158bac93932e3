package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// writeImage writes data to a new file; sparse leaves its zero pages as
// holes, so some of the splitter's windows lie in one data region (mapped,
// on Linux) and some do not (read).
func writeImage(t *testing.T, data []byte, sparse bool) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if !sparse {
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += PageSize {
		page := data[off:min(off+PageSize, len(data))]
		if !IsZero(page) {
			if _, err := f.WriteAt(page, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// TestSplitter_File splits files, dense and sparse, and gets the chunks a
// splitter over the same bytes in memory gets: the windows it maps and the
// ones it reads cut and hash alike.
func TestSplitter_File(t *testing.T) {
	for _, p := range []Params{FixedPage(), {Method: Fixed, Size: 16 << 10}, SmallCDC(testPol)} {
		for _, size := range []int{0, 4097, 3<<20 + 123, 9 << 20} {
			for _, zf := range []float64{0, 0.3, 0.97} {
				for _, sparse := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/size=%d/zero=%v/sparse=%v", p, size, zf, sparse), func(t *testing.T) {
						data := makeImage(uint64(size)+7, size, zf)
						f := writeImage(t, data, sparse)
						regions, err := DataRegions(f, int64(size))
						if err != nil {
							t.Fatal(err)
						}
						opts := []SplitterOption{WithReadSize(1 << 20), WithWorkers(2)}
						got := collect(t, f, int64(size), regions, p, true, opts...)
						want := collect(t, bytes.NewReader(data), int64(size), nil, p, true, opts...)
						if len(got) != len(want) {
							t.Fatalf("%d chunks from the file, %d from memory", len(got), len(want))
						}
						for i := range got {
							g, w := got[i], want[i]
							if g.Offset != w.Offset || g.Length != w.Length || g.Zero != w.Zero || g.ID != w.ID {
								t.Fatalf("chunk %d: file %d+%d zero=%v, memory %d+%d zero=%v", i, g.Offset, g.Length, g.Zero, w.Offset, w.Length, w.Zero)
							}
						}
					})
				}
			}
		}
	}
}

// TestSplitter_FileShrinks truncates a file while it is being split: the
// chunk already returned and the splitter's next windows fail with an
// error (ErrShrank where they are mapped), never a crash.
func TestSplitter_FileShrinks(t *testing.T) {
	data := makeImage(11, 12<<20, 0)
	f := writeImage(t, data, false)
	s, err := NewSplitter(f, int64(len(data)), nil, FixedPage(), WithWorkers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	c, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	var copied []byte
	err = Guard(func() error {
		copied = append(copied, c.Data...)
		return nil
	})
	if mapped := s.mapper != nil; mapped && !errors.Is(err, ErrShrank) {
		t.Fatalf("reading a chunk of the truncated mapping: %v (%d bytes), want ErrShrank", err, len(copied))
	}
	for {
		_, err = s.Next()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrShrank) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("splitting on after the truncation: %v, want ErrShrank or io.ErrUnexpectedEOF", err)
	}
	if err2 := Guard(func() error { return errors.New("plain") }); err2 == nil || errors.Is(err2, ErrShrank) {
		t.Fatalf("Guard passes fn's error through: %v", err2)
	}
}

// TestSplitter_DetachWindow keeps the windows of a dense file past the
// calls that follow them: the chunks of every batch stay valid, and lie in
// their window's Data at their offset, until the window is released.
func TestSplitter_DetachWindow(t *testing.T) {
	data := makeImage(13, 10<<20+3*PageSize, 0.4)
	f := writeImage(t, data, false)
	s, err := NewSplitter(f, int64(len(data)), nil, FixedPage(), WithReadSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	type kept struct {
		w  *Window
		cs []Chunk
	}
	var all []kept
	for {
		cs, err := s.NextBatch()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := s.DetachWindow()
		if w == nil {
			if s.mapper != nil {
				t.Fatal("a window of a dense file was not mapped")
			}
			return // no mappings here
		}
		all = append(all, kept{w, slices.Clone(cs)})
	}
	var off int64
	for _, k := range all {
		for _, c := range k.cs {
			if c.Offset != off {
				t.Fatalf("chunk at %d, want %d", c.Offset, off)
			}
			off += int64(c.Length)
			if c.Zero {
				continue
			}
			in := k.w.Data[c.Offset-k.w.Offset:][:c.Length]
			if !bytes.Equal(c.Data, data[c.Offset:c.Offset+int64(c.Length)]) || !bytes.Equal(in, c.Data) || Sum(in) != c.ID {
				t.Fatalf("chunk at %d: data or id wrong after later batches", c.Offset)
			}
		}
		k.w.Release()
		k.w.Release() // twice is harmless
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, want %d", off, len(data))
	}
	(*Window)(nil).Release()
	cdc, err := NewSplitter(f, int64(len(data)), nil, SmallCDC(testPol))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cdc.Close() }()
	if _, err := cdc.NextBatch(); err != nil {
		t.Fatal(err)
	}
	if cdc.DetachWindow() != nil {
		t.Fatal("a CDC splitter detached a window (its chunks are copies)")
	}
}
