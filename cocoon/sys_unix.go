//go:build unix

package cocoon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockPollMin = time.Millisecond
	lockPollMax = 50 * time.Millisecond
)

// lockFile takes flock(2) on path, exclusive or shared, creating the file
// like Cocoon does. flock(2) cannot be interrupted by ctx, so it polls with
// LOCK_NB and a short, growing sleep. The returned func releases the lock.
func lockFile(ctx context.Context, path string, exclusive bool) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// A shared lock needs only read access, so readers without write
	// permission on an existing lock file still work.
	flag, how := os.O_RDONLY|os.O_CREATE, unix.LOCK_SH
	if exclusive {
		flag, how = os.O_RDWR|os.O_CREATE, unix.LOCK_EX
	}
	f, err := os.OpenFile(path, flag, dbFileMode)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	delay := lockPollMin
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-timer.C:
		}
		delay = min(2*delay, lockPollMax)
	}
	return func() error {
		uerr := unix.Flock(int(f.Fd()), unix.LOCK_UN)
		// Closing the last descriptor releases the lock even if LOCK_UN failed.
		cerr := f.Close()
		if uerr != nil {
			return fmt.Errorf("unlock %s: %w", path, uerr)
		}
		if cerr != nil {
			return fmt.Errorf("unlock %s: %w", path, cerr)
		}
		return nil
	}, nil
}

// renameDir renames a directory with rename(2)'s own rules: it replaces an
// empty directory atomically and fails on a non-empty one. os.Rename refuses
// any existing directory target, which would force a racy rmdir first.
func renameDir(from, to string) error {
	return unix.Rename(from, to)
}

// isTargetExists reports whether err from renameDir means the target is in
// the way (non-empty directory, or not a directory).
func isTargetExists(err error) bool {
	return errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTDIR)
}

// pidAlive reports whether pid may be running. Only ESRCH proves it is not;
// anything else (EPERM: another user's process) counts as alive.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// pidNamespace identifies this process's PID namespace, or "" when unknown.
// A PID means nothing across namespaces (vk-cocoon in a container, a CLI on
// the host), so a staging owner's PID is trusted only within the same one.
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}
