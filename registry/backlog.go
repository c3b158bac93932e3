package registry

import (
	"slices"
	"sync"
)

// backlog runs work in the background and lets a caller wait for the work
// started before it asked. Pulls run concurrently (the Puller's PreWarm),
// each waiting for earlier pulls' work while others add to it, which a
// sync.WaitGroup does not allow (Add from zero concurrent with Wait).
type backlog struct {
	mu   sync.Mutex
	jobs []chan struct{}
}

// Go runs fn on a goroutine of its own.
func (b *backlog) Go(fn func()) {
	done := make(chan struct{})
	b.mu.Lock()
	b.jobs = append(b.jobs, done)
	b.mu.Unlock()
	go func() {
		defer func() {
			b.mu.Lock()
			b.jobs = slices.DeleteFunc(b.jobs, func(c chan struct{}) bool { return c == done })
			b.mu.Unlock()
			close(done)
		}()
		fn()
	}()
}

// Wait returns once the work started before it was called is done.
func (b *backlog) Wait() {
	b.mu.Lock()
	jobs := slices.Clone(b.jobs)
	b.mu.Unlock()
	for _, done := range jobs {
		<-done
	}
}
