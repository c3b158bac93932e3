//go:build !linux

package objectstore

import (
	"errors"
	"os"
)

var errNoLink = errors.New("linking an open file is not supported here")

func openAnonymous(string) (*os.File, error) { return nil, errNoLink }

func linkFile(*os.File, string) error { return errNoLink }

func setDirect(*os.File, bool) error { return errors.ErrUnsupported }

func sameFilesystem(string, string) bool { return false }
