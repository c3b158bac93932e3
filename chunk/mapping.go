package chunk

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrShrank is returned when a file read through its mapping ended before
// the size it was split at: it was truncated while it was being read.
var ErrShrank = errors.New("file shrank while it was read")

// Guard runs fn, turning a fault on a file mapping (the file shrank under
// it) into ErrShrank instead of a crash. A Splitter guards its own reads;
// a caller that reads Chunk.Data of a Splitter over an *os.File guards
// those reads with Guard.
func Guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			f, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%w (fault at %#x)", ErrShrank, f.Addr())
		}
	}()
	return fn()
}

// Window is a file mapping handed over by Splitter.DetachWindow: the Data
// of the chunks of the batch it was detached after stays valid until
// Release.
type Window struct {
	Offset  int64  // file offset of Data[0]
	Data    []byte // the file's bytes [Offset, Offset+len(Data))
	mapping []byte
}

// DetachWindow hands over the mapping that the chunks of the batch
// NextBatch just returned lie in, so that their Data stays valid until
// the window's Release rather than until the next call (a caller pipelining
// batches needs no copy of them); the splitter maps its next window anew.
// It returns nil when there is no such mapping (the window was read, not
// mapped, or the splitter is CDC, whose chunks are copies): then Data is
// valid until the next call, as always.
func (s *Splitter) DetachWindow() *Window {
	if s.p.Method != Fixed {
		return nil
	}
	m := s.mapper.detach()
	if m == nil {
		return nil
	}
	w := &Window{Offset: s.winOff, Data: s.win[:s.winLen], mapping: m}
	s.win, s.winLen = nil, 0
	return w
}

// guardAll runs the functions on goroutines of their own, each guarded,
// and returns the first error.
func guardAll(fns []func()) error {
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errs <- Guard(func() error { fn(); return nil }) }()
	}
	var first error
	for range fns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
