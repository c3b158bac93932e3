package registry

import "os"

// removeLater deletes path in the background; Close waits for it.
func (r *Registry) removeLater(path string) {
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		_ = os.RemoveAll(path)
	}()
}
