package objectstore

import (
	"cmp"
	"errors"
	"io"
	"os"
	"sync"
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

// SpoolBufferSize is the size of a SpoolWriter's buffers.
const SpoolBufferSize = 1 << 20

// directInFlight is how many buffers a direct SpoolWriter has: one is
// filled while the others are written. An O_DIRECT write returns when the
// device has the bytes, so with one buffer the caller would wait for the
// device; more than one write at a time was slower (ext4 serialises
// extending direct writes).
const directInFlight = 2

// directBuffers recycles the aligned buffers of direct writers (a 16 MiB
// pack would otherwise allocate its own).
var directBuffers = sync.Pool{New: func() any {
	raw := make([]byte, SpoolBufferSize+directAlign)
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1)) //nolint:gosec // the address is only read, to align the buffer
	b := raw[off : off+SpoolBufferSize]
	return &b
}}

// SpoolWriter is a buffered writer for a spool. With direct set it writes
// whole buffers around the page cache (O_DIRECT, Linux), each in the
// background while the caller fills the other, and the last partial
// block through the page cache. For a spool the store takes as it is (see
// Client.TakesSpools), whose bytes nobody reads back, copying them into
// page cache pages only costs CPU (and, on VMs whose free memory goes back
// to the host, a fault per fresh page: 2 of a 1 GiB first push's 5 CPU
// seconds on the benchmark VM) and evicts pages worth keeping. Where the
// system or filesystem refuses O_DIRECT it writes through the page cache.
type SpoolWriter struct {
	f      *os.File
	buf    []byte // being filled
	n      int
	off    int64 // the file offset of buf[0]
	direct bool
	// proven: a direct write succeeded, so later ones may run in the
	// background (the first, written at once, finds out whether the
	// filesystem takes O_DIRECT at all).
	proven bool
	err    error // the first error, returned ever after

	free  chan *[]byte // direct buffers not being written
	bg    sync.WaitGroup
	bgMu  sync.Mutex
	bgErr error
}

// Writer returns a SpoolWriter that writes the spool from its current
// offset on. Close it to write the last bytes.
func (s *Spool) Writer(direct bool) (*SpoolWriter, error) {
	off, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	w := &SpoolWriter{f: s.File, off: off}
	if direct && off%directAlign == 0 && setDirect(s.File, true) == nil {
		w.direct = true
		w.free = make(chan *[]byte, directInFlight)
		for range directInFlight {
			w.free <- directBuffers.Get().(*[]byte)
		}
		w.buf = *<-w.free
	} else {
		w.buf = make([]byte, SpoolBufferSize)
	}
	return w, nil
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
			if w.err = w.writeFull(); w.err != nil {
				return total - len(p), w.err
			}
			w.n = 0
		}
	}
	return total, nil
}

// writeFull writes the full buffer; a proven direct writer hands it to a
// background write and goes on with a free buffer.
func (w *SpoolWriter) writeFull() error {
	if !w.proven {
		if err := w.writeAt(w.buf, w.off); err != nil {
			return err
		}
		w.proven = w.direct
		w.off += int64(len(w.buf))
		return nil
	}
	full, off := w.buf, w.off
	w.off += int64(len(full))
	w.bg.Go(func() {
		if _, err := w.f.WriteAt(full, off); err != nil {
			w.bgMu.Lock()
			w.bgErr = cmp.Or(w.bgErr, err)
			w.bgMu.Unlock()
		}
		w.free <- &full
	})
	w.buf = *<-w.free
	w.bgMu.Lock()
	defer w.bgMu.Unlock()
	return w.bgErr
}

// Close writes what is buffered, the whole blocks directly and the rest
// through the page cache, waits for the background writes and leaves the
// file out of O_DIRECT at the offset after the last byte, so that it
// reads like any file (an O_DIRECT read needs aligned buffers). It does
// not close the spool.
func (w *SpoolWriter) Close() error {
	if w.err == nil {
		w.err = w.close()
	}
	return w.err
}

func (w *SpoolWriter) close() error {
	defer w.release()
	whole := w.n
	if w.direct {
		whole &^= directAlign - 1
	}
	if whole > 0 {
		if err := w.writeAt(w.buf[:whole], w.off); err != nil {
			return err
		}
		w.off += int64(whole)
	}
	w.bg.Wait()
	if w.bgErr != nil {
		return w.bgErr
	}
	if err := w.buffered(); err != nil {
		return err
	}
	if rest := w.buf[whole:w.n]; len(rest) > 0 {
		if _, err := w.f.WriteAt(rest, w.off); err != nil {
			return err
		}
		w.off += int64(len(rest))
	}
	w.n = 0
	_, err := w.f.Seek(w.off, io.SeekStart)
	return err
}

// release returns the direct buffers to the pool once no write uses them.
func (w *SpoolWriter) release() {
	if w.free == nil {
		return
	}
	w.bg.Wait()
	cur := w.buf // not &w.buf: the field is cleared below
	directBuffers.Put(&cur)
	for range directInFlight - 1 {
		directBuffers.Put(<-w.free)
	}
	w.free, w.buf = nil, nil
}

// writeAt writes b at off, falling back to the page cache for good when
// the filesystem refuses an O_DIRECT write (EINVAL: nothing was written).
func (w *SpoolWriter) writeAt(b []byte, off int64) error {
	_, err := w.f.WriteAt(b, off)
	if err != nil && w.direct && !w.proven && errors.Is(err, syscall.EINVAL) {
		if err := w.buffered(); err != nil {
			return err
		}
		_, err = w.f.WriteAt(b, off)
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
