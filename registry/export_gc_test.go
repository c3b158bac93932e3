package registry

// SetGCTestHook makes GC call f at named points ("tombstone": after the
// tombstone write, before any deletion); an error from f stops the run
// there, as a crash would. It returns a function restoring the old hook.
func SetGCTestHook(f func(point string) error) (restore func()) {
	old := gcTestHook
	gcTestHook = f
	return func() { gcTestHook = old }
}
