package registry

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestBacklog waits for the work started before Wait, with work added
// concurrently by other goroutines (what a sync.WaitGroup forbids).
func TestBacklog(t *testing.T) {
	var b backlog
	var done atomic.Int64
	release := make(chan struct{})
	b.Go(func() { <-release; done.Add(1) })
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Go(func() { done.Add(1) })
				b.Wait()
			}
		})
	}
	close(release)
	b.Wait()
	if done.Load() < 1 {
		t.Fatal("Wait returned before the work started before it")
	}
	wg.Wait()
	b.Wait()
	if got := done.Load(); got != 801 {
		t.Fatalf("%d jobs done, want 801", got)
	}
}
