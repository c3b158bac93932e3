package objectstore

import (
	"context"
	"errors"
)

// permanentError marks an error that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying; errors.Is and errors.As still
// see through it. Backends (and fault-injecting fakes in tests) use it for
// failures such as access denied or a missing bucket. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	var p *permanentError
	if errors.As(err, &p) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether retrying the call that returned err is
// pointless: err is marked by Permanent, or wraps ErrNotFound,
// ErrPreconditionFailed, ErrInvalidKey, ErrInvalidRange, ErrConfig,
// context.Canceled or context.DeadlineExceeded. Anything else is treated
// as transient.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanentError
	switch {
	case errors.As(err, &p),
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrPreconditionFailed),
		errors.Is(err, ErrInvalidKey),
		errors.Is(err, ErrInvalidRange),
		errors.Is(err, ErrConfig),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
