package index_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cocoonstack/epoch-dedup/index"
)

func TestIndexObject_RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	packs := []index.PackRecord{randPack(rng, 100), randPack(rng, 1), {Pack: randID(rng), Size: 0}}
	data, err := index.EncodeIndexObject(packs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := index.DecodeIndexObject(data)
	if err != nil {
		t.Fatal(err)
	}
	packs[2].Entries = []index.PackEntry{} // decoded as empty, not nil
	if !reflect.DeepEqual(got, packs) {
		t.Fatal("round trip differs")
	}
	t.Logf("%d entries: %d bytes", 101, len(data))

	flip := func(i int) []byte {
		b := append([]byte(nil), data...)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, index.ErrTruncated},
		{"magic", []byte("EDRC0123456789abcdefgh"), index.ErrBadMagic},
		{"truncated", data[:len(data)-3], index.ErrTruncated},
		{"trailing", append(append([]byte(nil), data...), 1), index.ErrCorrupt},
		{"version", flip(4), index.ErrVersion},
		{"checksum", flip(30), index.ErrChecksum},
	}
	for _, tt := range tests {
		if _, err := index.DecodeIndexObject(tt.data); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	bad := []index.PackRecord{randPack(rng, 2)}
	bad[0].Entries[1].BlockLength = 1 << 31
	if _, err := index.EncodeIndexObject(bad); !errors.Is(err, index.ErrInvalidArgument) {
		t.Fatalf("encode bad pack: %v", err)
	}
}

// FuzzDecodeIndexObject checks that decoding never panics, also with the
// CRC fixed so mutations reach the body, and that whatever decodes
// re-encodes to the same packs.
func FuzzDecodeIndexObject(f *testing.F) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, packs := range [][]index.PackRecord{nil, {randPack(rng, 3)}, {randPack(rng, 1), randPack(rng, 2)}} {
		data, err := index.EncodeIndexObject(packs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs := [][]byte{data}
		if len(data) >= 20 {
			fixed := append([]byte(nil), data...)
			end := len(fixed) - 4
			binary.LittleEndian.PutUint32(fixed[end:], crc32.Checksum(fixed[:end], castagnoli))
			inputs = append(inputs, fixed)
		}
		for _, in := range inputs {
			packs, err := index.DecodeIndexObject(in)
			if err != nil {
				continue
			}
			again, err := index.EncodeIndexObject(packs)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			packs2, err := index.DecodeIndexObject(again)
			if err != nil || !reflect.DeepEqual(packs, packs2) {
				t.Fatalf("re-decode: %v", err)
			}
		}
	})
}
