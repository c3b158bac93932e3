package chunk

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/restic/chunker"
)

// Size limits accepted by Params.Validate. MaxChunkSize matches the largest
// chunk a pack accepts, so every chunk the splitter emits can be stored.
const (
	// MinCDCSize is the smallest CDC Min: the Rabin window is 64 bytes and
	// tinier chunks cost more in IDs than they save.
	MinCDCSize = 512
	// MaxChunkSize is the largest fixed Size or CDC Max.
	MaxChunkSize = 16 << 20

	maxZeroRun   = 1 << 30 // longest single zero chunk, so lengths fit any int
	minPolDegree = 9       // restic's chunker shifts by Deg-8
	maxPolDegree = 53      // restic's chunker rejects larger degrees
	kib          = 1 << 10
	mib          = 1 << 20
)

// Method is how a file is cut into chunks.
type Method int

const (
	// Fixed cuts at every multiple of Params.Size, aligned to the file start:
	// best for memory and disk images, whose changes are page-sized and
	// page-aligned (FACTS §4; Measurements in doc.go).
	Fixed Method = iota + 1
	// CDC cuts where a Rabin fingerprint of the last 64 bytes matches,
	// so chunks survive insertions that shift bytes (JSON, tar streams).
	CDC
)

// ErrInvalidParams is wrapped by Params.Validate and ParseParams.
var ErrInvalidParams = errors.New("invalid chunk params")

// String returns "fixed" or "cdc".
func (m Method) String() string {
	switch m {
	case Fixed:
		return "fixed"
	case CDC:
		return "cdc"
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// Params describes a chunking method. The zero value is invalid.
type Params struct {
	Method Method
	// Size is the chunk size for Fixed; a multiple of PageSize.
	Size int
	// Min, Avg and Max bound CDC chunk sizes; Avg is a power of two
	// (the fingerprint mask), Min <= Avg <= Max. The last chunk of a data
	// run may be shorter than Min.
	Min, Avg, Max int
	// Pol is the irreducible polynomial of the CDC fingerprint, recorded
	// once per store (see FormatPol): the same polynomial must be used for
	// every push or chunks stop matching.
	Pol chunker.Pol
}

// FixedPage is fixed 4 KiB chunking, the default for memory and disk images.
func FixedPage() Params { return Params{Method: Fixed, Size: PageSize} }

// SmallCDC is the default for everything but images: min 16 KiB, average
// 64 KiB, max 256 KiB.
func SmallCDC(pol chunker.Pol) Params {
	return Params{Method: CDC, Min: 16 * kib, Avg: 64 * kib, Max: 256 * kib, Pol: pol}
}

// ResticCDC is restic's default chunking (512 KiB / 1 MiB / 8 MiB), kept for
// measurements and comparison; it dedups guest memory badly (FACTS §4).
func ResticCDC(pol chunker.Pol) Params {
	return Params{Method: CDC, Min: chunker.MinSize, Avg: 1 * mib, Max: chunker.MaxSize, Pol: pol}
}

// ParamsFor returns the default chunking for a file name (only its base
// name counts): guest memory ("memory-ranges", "mem", any name containing
// "memory") and disk images (*.raw, *.qcow2, *.img) get fixed 4 KiB
// page-aligned chunks; everything else (JSON, vmstate, tar, unknown) gets
// SmallCDC with pol.
func ParamsFor(filename string, pol chunker.Pol) Params {
	base := strings.ToLower(filepath.Base(filename))
	switch {
	case base == "mem", base == "memory-ranges", strings.Contains(base, "memory"):
		return FixedPage()
	}
	switch filepath.Ext(base) {
	case ".raw", ".qcow2", ".img", ".mem":
		return FixedPage()
	}
	return SmallCDC(pol)
}

// maxExtentsHint caps ExtentsHint: two million extents, a 96 MiB recipe,
// is an 8 GiB memory file; larger files grow their recipe by appending.
const maxExtentsHint = 1 << 21

// ExtentsHint returns a capacity for the recipe of a file whose data lies
// in regions: for Fixed an upper bound (each chunk is one extent, zero
// chunks next to each other merge, and each region may follow a hole), for
// CDC the expected count. Growing a million-extent recipe by appending
// copies and faults in about five times its size; pushing a 1 GiB memory
// file spent 7 % of its CPU doing so.
func (p Params) ExtentsHint(regions []Region) int {
	size := p.Size
	if p.Method == CDC {
		size = p.Avg
	}
	if size <= 0 {
		return 0
	}
	n := int64(1)
	for _, r := range regions {
		n += 1 + (r.Length+int64(size)-1)/int64(size)
		if n >= maxExtentsHint {
			return maxExtentsHint
		}
	}
	return int(n)
}

// Validate reports whether the splitter can use p.
func (p Params) Validate() error {
	switch p.Method {
	case Fixed:
		if p.Size <= 0 || p.Size%PageSize != 0 || p.Size > MaxChunkSize {
			return fmt.Errorf("%w: fixed size %d is not a multiple of %d up to %d", ErrInvalidParams, p.Size, PageSize, MaxChunkSize)
		}
		return nil
	case CDC:
		if p.Min < MinCDCSize || p.Min > p.Avg || p.Avg > p.Max || p.Max > MaxChunkSize {
			return fmt.Errorf("%w: cdc sizes %d/%d/%d must satisfy %d <= min <= avg <= max <= %d",
				ErrInvalidParams, p.Min, p.Avg, p.Max, MinCDCSize, MaxChunkSize)
		}
		if p.Avg&(p.Avg-1) != 0 {
			return fmt.Errorf("%w: cdc average %d is not a power of two", ErrInvalidParams, p.Avg)
		}
		if err := validatePol(p.Pol); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidParams, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown method %d", ErrInvalidParams, int(p.Method))
}

// String returns the form recorded in configs and recipes: "fixed-4096" or
// "cdc-16k-64k-256k". It leaves out the polynomial, which the store records
// once (FormatPol). ParseParams reverses it.
func (p Params) String() string {
	switch p.Method {
	case Fixed:
		return "fixed-" + strconv.Itoa(p.Size)
	case CDC:
		return "cdc-" + formatSize(p.Min) + "-" + formatSize(p.Avg) + "-" + formatSize(p.Max)
	}
	return p.Method.String()
}

// ParseParams parses the String form and validates the result; pol is used
// for CDC and ignored for Fixed.
func ParseParams(s string, pol chunker.Pol) (Params, error) {
	fields := strings.Split(s, "-")
	var p Params
	switch {
	case fields[0] == "fixed" && len(fields) == 2:
		n, err := parseSize(fields[1])
		if err != nil {
			return Params{}, fmt.Errorf("%w: %q: %w", ErrInvalidParams, s, err)
		}
		p = Params{Method: Fixed, Size: n}
	case fields[0] == "cdc" && len(fields) == 4:
		var sizes [3]int
		for i, f := range fields[1:] {
			n, err := parseSize(f)
			if err != nil {
				return Params{}, fmt.Errorf("%w: %q: %w", ErrInvalidParams, s, err)
			}
			sizes[i] = n
		}
		p = Params{Method: CDC, Min: sizes[0], Avg: sizes[1], Max: sizes[2], Pol: pol}
	default:
		return Params{}, fmt.Errorf("%w: %q is not fixed-SIZE or cdc-MIN-AVG-MAX", ErrInvalidParams, s)
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// RandomPolynomial returns a random irreducible polynomial of degree 53 for
// a new store's CDC fingerprint.
func RandomPolynomial() (chunker.Pol, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return 0, fmt.Errorf("random chunker polynomial: %w", err)
	}
	return pol, nil
}

// FormatPol returns the form recorded in the store config: "0x" and
// lowercase hex, as chunker.Pol.String.
func FormatPol(pol chunker.Pol) string { return pol.String() }

// ParsePol parses FormatPol's form (the "0x" prefix is optional, which also
// accepts restic's JSON form) and checks that the polynomial is usable:
// degree 9..53 and irreducible.
func ParsePol(s string) (chunker.Pol, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	n, err := strconv.ParseUint(h, 16, 64)
	if err != nil || h == "" || strings.HasPrefix(h, "+") {
		return 0, fmt.Errorf("parse chunker polynomial %q: not hex", truncate(s))
	}
	pol := chunker.Pol(n)
	if err := validatePol(pol); err != nil {
		return 0, fmt.Errorf("parse chunker polynomial %q: %w", s, err)
	}
	return pol, nil
}

func validatePol(pol chunker.Pol) error {
	if d := pol.Deg(); d < minPolDegree || d > maxPolDegree {
		return fmt.Errorf("polynomial %s has degree %d, want %d..%d", pol, d, minPolDegree, maxPolDegree)
	}
	if !pol.Irreducible() {
		return fmt.Errorf("polynomial %s is reducible", pol)
	}
	return nil
}

func formatSize(n int) string {
	switch {
	case n >= mib && n%mib == 0:
		return strconv.Itoa(n/mib) + "m"
	case n >= kib && n%kib == 0:
		return strconv.Itoa(n/kib) + "k"
	}
	return strconv.Itoa(n)
}

func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = kib, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = mib, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > MaxChunkSize/mult || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
