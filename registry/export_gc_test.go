package registry

import "context"

// SetGCTestHook makes GC call f at named points ("tombstone": after the
// tombstone write, before any deletion); an error from f stops the run
// there, as a crash would. It returns a function restoring the old hook.
func SetGCTestHook(f func(point string) error) (restore func()) {
	old := gcTestHook
	gcTestHook = f
	return func() { gcTestHook = old }
}

// SyncIndex brings the node index up to date with the store, as every pull
// and push does first.
func (r *Registry) SyncIndex(ctx context.Context) error {
	if err := r.init(ctx); err != nil {
		return err
	}
	return r.syncIndex(ctx)
}
