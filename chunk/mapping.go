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
