package chunk

import (
	"errors"
	"strings"
	"testing"

	"github.com/restic/chunker"
)

func TestParamsFor(t *testing.T) {
	tests := []struct {
		name string
		want Params
	}{
		{"memory-ranges", FixedPage()},
		{"/var/lib/cocoon/snapshot/localfile/ID/memory-ranges", FixedPage()},
		{"mem", FixedPage()},
		{"guest-memory.bin", FixedPage()},
		{"MEMORY", FixedPage()},
		{"overlay.qcow2", FixedPage()},
		{"cow.raw", FixedPage()},
		{"data-abc.raw", FixedPage()},
		{"cidata.img", FixedPage()},
		{"config.json", SmallCDC(testPol)},
		{"state.json", SmallCDC(testPol)},
		{"vmstate", SmallCDC(testPol)},
		{"layer.tar", SmallCDC(testPol)},
		{"memo.txt", SmallCDC(testPol)},
		{"", SmallCDC(testPol)},
	}
	for _, tt := range tests {
		got := ParamsFor(tt.name, testPol)
		if got != tt.want {
			t.Errorf("ParamsFor(%q) = %v, want %v", tt.name, got, tt.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ParamsFor(%q) invalid: %v", tt.name, err)
		}
	}
}

func TestParams_Validate(t *testing.T) {
	reducible := chunker.Pol(1<<53 | 1<<1) // x^53 + x: divisible by x
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"fixed page", FixedPage(), true},
		{"fixed 64k", Params{Method: Fixed, Size: 64 << 10}, true},
		{"small cdc", SmallCDC(testPol), true},
		{"restic cdc", ResticCDC(testPol), true},
		{"zero value", Params{}, false},
		{"unknown method", Params{Method: 9, Size: 4096}, false},
		{"fixed zero", Params{Method: Fixed}, false},
		{"fixed unaligned", Params{Method: Fixed, Size: 5000}, false},
		{"fixed too big", Params{Method: Fixed, Size: MaxChunkSize + PageSize}, false},
		{"cdc min too small", Params{Method: CDC, Min: 64, Avg: 1024, Max: 4096, Pol: testPol}, false},
		{"cdc min > avg", Params{Method: CDC, Min: 8192, Avg: 4096, Max: 16384, Pol: testPol}, false},
		{"cdc avg > max", Params{Method: CDC, Min: 1024, Avg: 8192, Max: 4096, Pol: testPol}, false},
		{"cdc avg not power of two", Params{Method: CDC, Min: 1024, Avg: 3000, Max: 4096, Pol: testPol}, false},
		{"cdc max too big", Params{Method: CDC, Min: 1024, Avg: 4096, Max: 32 << 20, Pol: testPol}, false},
		{"cdc no pol", SmallCDC(0), false},
		{"cdc pol degree 60", SmallCDC(1<<60 | 1), false},
		{"cdc reducible pol", SmallCDC(reducible), false},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s: %v does not wrap ErrInvalidParams", tt.name, err)
		}
	}
}

func TestParseParams(t *testing.T) {
	for _, p := range []Params{
		FixedPage(),
		{Method: Fixed, Size: 16 << 10},
		SmallCDC(testPol), ResticCDC(testPol),
		{Method: CDC, Min: 1000, Avg: 4096, Max: 10000, Pol: testPol},
	} {
		s := p.String()
		got, err := ParseParams(s, testPol)
		if err != nil || got != p {
			t.Errorf("ParseParams(%q) = %v, %v; want %v", s, got, err, p)
		}
	}
	if s := FixedPage().String(); s != "fixed-4096" {
		t.Errorf("FixedPage().String() = %q", s)
	}
	if s := SmallCDC(testPol).String(); s != "cdc-16k-64k-256k" {
		t.Errorf("SmallCDC().String() = %q", s)
	}
	for _, bad := range []string{
		"", "fixed", "fixed-", "fixed-4097", "fixed-+4096", "fixed--4096", "fixed-4k-1",
		"cdc-16k-64k", "cdc-16k-64k-256x", "cdc-64k-16k-256k", "rabin-1-2-3", "fixed-99999999999999999999",
	} {
		if _, err := ParseParams(bad, testPol); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("ParseParams(%q) = %v, want ErrInvalidParams", bad, err)
		}
	}
}

func TestPol(t *testing.T) {
	pol, err := RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{FormatPol(pol), strings.TrimPrefix(FormatPol(pol), "0x")} {
		got, err := ParsePol(s)
		if err != nil || got != pol {
			t.Errorf("ParsePol(%q) = %v, %v; want %v", s, got, err, pol)
		}
	}
	for _, bad := range []string{"", "0x", "xyz", "0x3", "0x20000000000002", "-1", "+3da3358b4dc173", "0x1000000000000001"} {
		if _, err := ParsePol(bad); err == nil {
			t.Errorf("ParsePol(%q) accepted", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	id := Sum([]byte("hello"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	tests := []string{
		"",
		"00",
		strings.Repeat("0", 63),
		strings.Repeat("0", 65),
		strings.ToUpper(id.String()),
		strings.Repeat("g", 64),
		" " + id.String()[1:],
		id.String()[:63] + "\x00",
		strings.Repeat("é", 32),
	}
	for _, s := range tests {
		if _, err := ParseID(s); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v, want ErrInvalidID", s, err)
		}
	}
	var back ID
	if err := back.UnmarshalText([]byte(id.String())); err != nil || back != id {
		t.Fatalf("UnmarshalText: %v", err)
	}
	if (ID{}).IsZero() != true || id.IsZero() {
		t.Fatal("IsZero")
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(Sum(nil).String())
	f.Add(strings.Repeat("f", 64))
	f.Add("not an id")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q) accepted but formats as %q", s, id.String())
		}
	})
}

func TestExtentsHint(t *testing.T) {
	cdc := SmallCDC(chunker.Pol(0x3DA3358B4DC173))
	tests := []struct {
		name    string
		p       Params
		regions []Region
		want    int
	}{
		{"empty file", FixedPage(), nil, 1},
		{"one page", FixedPage(), []Region{{0, 4096}}, 3},
		{"partial page", FixedPage(), []Region{{0, 100}}, 3},
		{"two regions", FixedPage(), []Region{{0, 8192}, {1 << 20, 4096}}, 6},
		{"1 GiB dense", FixedPage(), []Region{{0, 1 << 30}}, 2 + 1<<18},
		{"capped", FixedPage(), []Region{{0, 1 << 40}}, maxExtentsHint},
		{"cdc expected count", cdc, []Region{{0, 64 << 20}}, 2 + 1024},
		{"invalid params", Params{}, []Region{{0, 4096}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.ExtentsHint(tc.regions); got != tc.want {
				t.Errorf("ExtentsHint = %d, want %d", got, tc.want)
			}
		})
	}
}
