package objectstore

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// Spool is a Put body its caller hands over: a file the caller wrote, will
// not write again, and closes after Put. A backend that keeps objects as
// files may take the file itself instead of copying its bytes: the folder
// store links it into place when it is on the same filesystem (Linux),
// which halves the page cache a push writes. Any other backend reads it
// like the *os.File it is.
type Spool struct {
	*os.File
	// name is set where the file could not be made anonymous: Close
	// removes it.
	name string
}

// NewSpool creates an empty spool file in dir. It has no name (O_TMPFILE
// on Linux, else a temp file removed at once where the system allows), so
// a killed process leaves nothing behind.
func NewSpool(dir string) (*Spool, error) {
	if f, err := openAnonymous(dir); err == nil {
		return &Spool{File: f}, nil
	}
	f, err := os.CreateTemp(dir, "spool-*")
	if err != nil {
		return nil, err
	}
	s := &Spool{File: f}
	if err := os.Remove(f.Name()); err != nil {
		s.name = f.Name() // Windows: an open file cannot be removed
	}
	return s, nil
}

// Close closes the file, and removes it where it kept a name.
func (s *Spool) Close() error {
	err := s.File.Close()
	if s.name != "" {
		_ = os.Remove(s.name)
	}
	return err
}

// directAlign is the alignment of O_DIRECT buffers, lengths and offsets:
// the largest logical block size of common devices.
const directAlign = 4096

// SpoolWriter is a buffered writer for a spool. With direct set it writes
// whole buffers around the page cache (O_DIRECT, Linux), and the last
// partial block through it: for a spool the store takes as it is (see
// Client.TakesSpools), whose bytes nobody reads back, copying them into
// page cache pages only costs CPU (and, on VMs whose free memory goes back
// to the host, a fault per fresh page: 2 of a 1 GiB first push's 5 CPU
// seconds on the benchmark VM) and evicts pages worth keeping. Where the
// system or filesystem refuses O_DIRECT it writes through the page cache.
type SpoolWriter struct {
	f      *os.File
	buf    []byte
	n      int
	direct bool
	err    error // the first write error, returned ever after
}

// Writer returns a SpoolWriter of the spool with a buffer of size bytes
// (rounded up to 4 KiB).
func (s *Spool) Writer(size int, direct bool) *SpoolWriter {
	size = max(directAlign, (size+directAlign-1)&^(directAlign-1))
	w := &SpoolWriter{f: s.File}
	if direct && setDirect(s.File, true) == nil {
		w.direct = true
		raw := make([]byte, size+directAlign)
		off := int(-uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1)) //nolint:gosec // the address is only read, to align the buffer
		w.buf = raw[off : off+size]
	} else {
		w.buf = make([]byte, size)
	}
	return w
}

// Write buffers p, writing out every full buffer.
func (w *SpoolWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := len(p)
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == len(w.buf) {
			if w.err = w.write(w.buf); w.err != nil {
				return total - len(p), w.err
			}
			w.n = 0
		}
	}
	return total, nil
}

// Flush writes what is buffered, the whole blocks directly and the rest
// through the page cache, and leaves the file out of O_DIRECT, so that it
// reads like any file (an O_DIRECT read needs aligned buffers): writes
// after a Flush go through the page cache.
func (w *SpoolWriter) Flush() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.flush()
	return w.err
}

func (w *SpoolWriter) flush() error {
	whole := w.n
	if w.direct {
		whole &^= directAlign - 1
	}
	if whole > 0 {
		if err := w.write(w.buf[:whole]); err != nil {
			return err
		}
	}
	if err := w.buffered(); err != nil {
		return err
	}
	if rest := w.buf[whole:w.n]; len(rest) > 0 {
		if _, err := w.f.Write(rest); err != nil {
			return err
		}
	}
	w.n = 0
	return nil
}

// write writes b, falling back to the page cache when the filesystem
// refuses an O_DIRECT write (EINVAL: nothing was written).
func (w *SpoolWriter) write(b []byte) error {
	_, err := w.f.Write(b)
	if err != nil && w.direct && errors.Is(err, syscall.EINVAL) {
		if err := w.buffered(); err != nil {
			return err
		}
		_, err = w.f.Write(b)
	}
	return err
}

// buffered switches the file back to writing through the page cache.
func (w *SpoolWriter) buffered() error {
	if !w.direct {
		return nil
	}
	w.direct = false
	return setDirect(w.f, false)
}
