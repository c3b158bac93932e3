package objectstore

import "os"

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
