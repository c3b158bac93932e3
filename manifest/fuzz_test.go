package manifest

import (
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"

	"github.com/cocoonstack/epoch-dedup/chunk"
)

func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	id := chunk.Sum([]byte("x"))
	r := &Recipe{}
	r.AppendData(id, 4096)
	r.AppendZero(1 << 33)
	r.AppendData(chunk.Sum([]byte("y")), 7)
	full, err := EncodeFull(r)
	if err != nil {
		tb.Fatal(err)
	}
	empty, err := EncodeFull(&Recipe{})
	if err != nil {
		tb.Fatal(err)
	}
	patch, err := EncodePatch(id, 3, r.Size+10, []Op{
		{Code: OpCopy, N: 1},
		{Code: OpSkip, N: 1},
		{Code: OpInsert, N: 2, Extents: []Extent{{Length: 10, ID: id}, {Length: 1 << 33, Zero: true}}},
		{Code: OpCopy, N: 1},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{full, empty, patch}
}

// FuzzDecode feeds Decode three ways: the input as is, the input with its
// CRC fixed (so mutations get past the envelope), and the input as a raw
// body sealed as a full and as a patch object (so they reach the parser).
// Decode must never panic, and whatever it accepts must re-encode to an
// object that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
		if len(s) > recipeHeaderSize+recipeTrailerSize {
			f.Add(s[recipeHeaderSize : len(s)-recipeTrailerSize])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs := [][]byte{data}
		if len(data) >= recipeHeaderSize+recipeTrailerSize {
			fixed := append([]byte(nil), data...)
			end := len(fixed) - recipeTrailerSize
			binary.LittleEndian.PutUint32(fixed[end:], crc32.Checksum(fixed[:end], castagnoli))
			inputs = append(inputs, fixed)
		}
		for _, kind := range []Kind{KindFull, KindPatch} {
			sealed, err := seal(kind, data)
			if err != nil {
				t.Fatal(err)
			}
			inputs = append(inputs, sealed)
		}
		for _, in := range inputs {
			obj, err := Decode(in)
			if err != nil {
				continue
			}
			var again []byte
			if obj.Kind == KindFull {
				again, err = EncodeFull(obj.Recipe)
			} else {
				again, err = EncodePatch(obj.Base, obj.Depth, obj.Size, obj.Ops)
			}
			if err != nil {
				t.Fatalf("re-encode accepted object: %v", err)
			}
			obj2, err := Decode(again)
			if err != nil {
				t.Fatalf("decode re-encoded object: %v", err)
			}
			if !reflect.DeepEqual(obj, obj2) {
				t.Fatalf("object changed on re-encode:\n%+v\n%+v", obj, obj2)
			}
		}
	})
}

// FuzzParse checks that Parse never panics and that what it accepts
// survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f.Add([]byte(`{"schemaVersion":1,"name":"a/b","tag":"latest","snapshotId":"s","image":"i","layers":[{"digest":"` + hex +
		`","size":1,"filename":"memory-ranges","mediaType":"application/vnd.cocoon.memory","recipe":"` + hex +
		`"}],"totalSize":1,"createdAt":"2026-04-01T00:00:00Z","pushedAt":"2026-04-01T00:00:00Z","x":{"y":null}}`))
	f.Add([]byte(`{"schemaVersion":1,"name":"a","tag":"t","layers":[],"totalSize":0}`))
	f.Add([]byte(`{"schemaVersion":1,"name":"a","tag":"t","layers":[{"filename":"../x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("marshal accepted manifest: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("parse marshalled manifest: %v\n%s", err, out)
		}
		out2, err := m2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("marshal not stable:\n%s\n%s", out, out2)
		}
	})
}

func TestExtentsCap(t *testing.T) {
	tests := []struct {
		count   uint64
		bodyLen int
		want    int
	}{
		{count: 0, bodyLen: 100, want: 0},
		{count: 1000, bodyLen: 1000 * 34, want: 1000},        // an honest body: the count
		{count: MaxExtents, bodyLen: 64, want: 5},            // a hostile count: what the bytes vouch for
		{count: 1 << 40, bodyLen: 1 << 40, want: MaxExtents}, // never past the format's limit
	}
	for _, tt := range tests {
		if got := extentsCap(tt.count, tt.bodyLen); got != tt.want {
			t.Errorf("extentsCap(%d, %d) = %d, want %d", tt.count, tt.bodyLen, got, tt.want)
		}
	}
}
