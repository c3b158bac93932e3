//go:build !linux

package chunk

// mapper is Linux-only; elsewhere the splitter reads its windows.
type mapper struct{}

func newMapper(any) *mapper { return nil }

func (*mapper) window(int64, int, bool) ([]byte, bool) { return nil, false }

func (*mapper) release() {}

func (*mapper) detach() []byte { return nil }

// Release does nothing: there are no mappings here.
func (*Window) Release() {}
