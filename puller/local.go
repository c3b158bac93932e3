package puller

import (
	"os"

	"github.com/cocoonstack/epoch-dedup/index"
)

// localSources keeps local files open across chunk reads and remembers which
// ones no longer match what the index recorded.
type localSources struct {
	open  map[string]int // path -> index in files
	files []*os.File
	stale map[string]bool
}

func newLocalSources() *localSources {
	return &localSources{open: make(map[string]int), stale: make(map[string]bool)}
}

// index returns the number of ref's file among the open sources, opening it
// and checking it against ref's validator first; -1 when it is gone or
// changed since it was indexed.
func (s *localSources) index(ref index.LocalRef) int {
	if s.file(ref) == nil {
		return -1
	}
	return s.open[ref.Path]
}

func (s *localSources) file(ref index.LocalRef) *os.File {
	if s.stale[ref.Path] {
		return nil
	}
	if n, ok := s.open[ref.Path]; ok {
		return s.files[n]
	}
	fh, err := os.Open(ref.Path)
	if err != nil {
		s.stale[ref.Path] = true
		return nil
	}
	fi, err := fh.Stat()
	if err != nil || index.ValidatorFor(fi) != ref.Validator {
		_ = fh.Close()
		s.stale[ref.Path] = true
		return nil
	}
	s.open[ref.Path] = len(s.files)
	s.files = append(s.files, fh)
	return fh
}

func (s *localSources) close() {
	for _, fh := range s.files {
		_ = fh.Close()
	}
}
