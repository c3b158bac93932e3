package manifest

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// MaxNameLength bounds a repository name.
	MaxNameLength = 255
	// MaxNamePartLength bounds one /-separated part of a repository name.
	MaxNamePartLength = 128
	// MaxTagLength bounds a tag, as in OCI.
	MaxTagLength = 128
	// MaxFilenameLength bounds a layer file name (NAME_MAX on Linux).
	MaxFilenameLength = 255
	// DefaultTag is the tag ParseReference uses when the reference has none.
	DefaultTag = "latest"
)

// ErrInvalidName is returned for a repository name, tag, reference or file
// name that fails validation.
var ErrInvalidName = errors.New("invalid name")

// ValidateName checks a repository name: one or more parts separated by "/",
// each of lowercase letters and digits with single runs of ".", "_" or "-"
// between them (so no part is empty, ".", ".." or starts with a separator).
// Names become object-store keys and local paths, so nothing else is let in.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty repository name", ErrInvalidName)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: repository name is %d bytes, limit %d", ErrInvalidName, len(name), MaxNameLength)
	}
	for part := range strings.SplitSeq(name, "/") {
		if err := validateNamePart(part); err != nil {
			return fmt.Errorf("%w: repository name %q: %s", ErrInvalidName, clip(name), err.Error())
		}
	}
	return nil
}

func validateNamePart(part string) error {
	switch {
	case part == "":
		return errors.New("empty part (leading, trailing or double slash)")
	case len(part) > MaxNamePartLength:
		return fmt.Errorf("part is %d bytes, limit %d", len(part), MaxNamePartLength)
	}
	prevSep := true // a part must start with an alphanumeric
	for i := 0; i < len(part); i++ {
		c := part[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			prevSep = false
		case c == '.' || c == '_' || c == '-':
			if prevSep {
				return fmt.Errorf("part %q: separator %q at start or after another separator", clip(part), c)
			}
			prevSep = true
		default:
			return fmt.Errorf("part %q: character %q not allowed (lowercase letters, digits, '.', '_', '-')", clip(part), c)
		}
	}
	if prevSep {
		return fmt.Errorf("part %q ends with a separator", clip(part))
	}
	return nil
}

// ValidateTag checks a tag against the OCI rule [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("%w: empty tag", ErrInvalidName)
	}
	if len(tag) > MaxTagLength {
		return fmt.Errorf("%w: tag is %d bytes, limit %d", ErrInvalidName, len(tag), MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			return fmt.Errorf("%w: tag %q: character %q not allowed at %d", ErrInvalidName, clip(tag), c, i)
		}
	}
	return nil
}

// ValidateFilename checks that name is a plain file name that stays inside
// the directory it is joined to: not empty, not "." or "..", no "/" or "\",
// no NUL or other control characters, at most MaxFilenameLength bytes. A
// manifest's file names come from the network; Epoch v0.1.x joined them to
// the data directory unchecked.
func ValidateFilename(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty file name", ErrInvalidName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: file name %q", ErrInvalidName, name)
	case len(name) > MaxFilenameLength:
		return fmt.Errorf("%w: file name is %d bytes, limit %d", ErrInvalidName, len(name), MaxFilenameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: file name %q: character %q not allowed", ErrInvalidName, clip(name), c)
		}
	}
	return nil
}

// ParseReference splits "name[:tag]" and validates both parts; the tag
// defaults to DefaultTag. Only a ":" after the last "/" starts the tag.
func ParseReference(ref string) (name, tag string, err error) {
	name, tag = ref, DefaultTag
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && i > strings.LastIndexByte(ref, '/') {
		name, tag = ref[:i], ref[i+1:]
	}
	if err := ValidateName(name); err != nil {
		return "", "", fmt.Errorf("parse reference %q: %w", clip(ref), err)
	}
	if err := ValidateTag(tag); err != nil {
		return "", "", fmt.Errorf("parse reference %q: %w", clip(ref), err)
	}
	return name, tag, nil
}
