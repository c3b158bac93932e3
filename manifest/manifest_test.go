package manifest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/epoch-dedup/manifest"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func validManifest() *manifest.Manifest {
	return &manifest.Manifest{
		SchemaVersion: 1,
		Name:          "team/sre-agent-bot",
		Tag:           "latest",
		SnapshotID:    "01hv7x3y2k9m4n5p6q7r8s9t0v",
		Image:         "ubuntu-24.04",
		ImageBlobIDs:  map[string]struct{}{hexA: {}},
		CPU:           2,
		Memory:        1 << 30,
		Layers: []manifest.Layer{
			{Digest: hexA, Size: 1 << 30, Filename: "memory-ranges", MediaType: manifest.MediaTypeMemory, Recipe: hexA, Mode: 0o600},
			{Digest: hexA, Size: 2048, Filename: "config.json", MediaType: manifest.MediaTypeConfig},
		},
		BaseImages: []manifest.BaseImage{{Digest: hexA, Size: 10, Filename: hexA + ".qcow2", MediaType: manifest.MediaTypeDiskQcow2}},
		TotalSize:  1<<30 + 2048,
		CreatedAt:  time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		PushedAt:   time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC),
	}
}

func TestParse_RoundTrip(t *testing.T) {
	m := validManifest()
	m.Extra = map[string]json.RawMessage{"futureField": json.RawMessage(`{"a":[1,2]}`), "zeta": json.RawMessage(`"z"`)}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	again, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(data) {
		t.Fatalf("round trip changed bytes:\n%s\n%s", data, again)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, got.Extra["futureField"]); err != nil || compact.String() != `{"a":[1,2]}` {
		t.Fatalf("extra lost: %v", got.Extra)
	}
	if manifest.Digest(data) != manifest.Digest(again) || len(manifest.Digest(data)) != 64 {
		t.Fatal("digest")
	}
}

// An Epoch v0.1.x manifest (no recipe fields) parses, and unknown keys survive.
func TestParse_EpochV01(t *testing.T) {
	in := `{"schemaVersion":1,"name":"sre-agent-bot","tag":"hibernate","snapshotId":"x","image":"img",
"layers":[{"digest":"` + hexA + `","size":5,"filename":"cow.raw","mediaType":"application/vnd.cocoon.disk.raw"}],
"totalSize":5,"createdAt":"2026-04-01T00:00:00Z","pushedAt":"2026-04-01T00:00:00Z","hypervisor":"firecracker"}`
	m, err := manifest.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"hypervisor":"firecracker"`) {
		t.Fatalf("unknown field dropped: %s", out)
	}
}

func TestParse_Invalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *manifest.Manifest)
		want   string
	}{
		{"schema", func(m *manifest.Manifest) { m.SchemaVersion = 2 }, "schemaVersion"},
		{"name", func(m *manifest.Manifest) { m.Name = "../etc" }, "name"},
		{"tag", func(m *manifest.Manifest) { m.Tag = "-x" }, "tag"},
		{"traversal", func(m *manifest.Manifest) { m.Layers[0].Filename = ".." }, "layers[0].filename"},
		{"slash", func(m *manifest.Manifest) { m.Layers[1].Filename = "a/b" }, "layers[1].filename"},
		{"dup", func(m *manifest.Manifest) { m.Layers[1].Filename = "memory-ranges" }, "appears twice"},
		{"digest", func(m *manifest.Manifest) { m.Layers[0].Digest = strings.ToUpper(hexA) }, "layers[0].digest"},
		{"negative size", func(m *manifest.Manifest) { m.Layers[0].Size = -1 }, "layers[0].size"},
		{"huge size", func(m *manifest.Manifest) { m.Layers[0].Size = 1 << 50 }, "layers[0].size"},
		{"recipe", func(m *manifest.Manifest) { m.Layers[0].Recipe = "abc" }, "layers[0].recipe"},
		{"mode", func(m *manifest.Manifest) { m.Layers[0].Mode = 0o4755 }, "layers[0].mode"},
		{"total", func(m *manifest.Manifest) { m.TotalSize = -5 }, "totalSize"},
		{"base image", func(m *manifest.Manifest) { m.BaseImages[0].Filename = "" }, "baseImages[0].filename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.mutate(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = manifest.Parse(data)
			if !errors.Is(err, manifest.ErrInvalidManifest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidManifest naming %q", err, tt.want)
			}
		})
	}
}

func TestParse_TooLarge(t *testing.T) {
	data := make([]byte, manifest.MaxManifestSize+1)
	if _, err := manifest.Parse(data); !errors.Is(err, manifest.ErrManifestTooLarge) {
		t.Fatalf("got %v", err)
	}
	if _, err := manifest.Parse([]byte("{")); !errors.Is(err, manifest.ErrInvalidManifest) {
		t.Fatalf("got %v", err)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"a", true},
		{"sre-agent-bot", true},
		{"team/sub/repo.v2_x", true},
		{"a0/b1", true},
		{"", false},
		{"..", false},
		{".", false},
		{"a/../b", false},
		{"a/./b", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{"Upper", false},
		{"a\x00b", false},
		{"a b", false},
		{"-a", false},
		{"a-", false},
		{"a:b", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a/", 127) + "a", true},
		{strings.Repeat("a/", 128), false},
		{strings.Repeat(strings.Repeat("a", 100)+"/", 2) + strings.Repeat("a", 56), false}, // 258 bytes
	}
	for _, tt := range tests {
		err := manifest.ValidateName(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, manifest.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, not ErrInvalidName", tt.in, err)
		}
	}
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"latest", true},
		{"V1.2-rc_3", true},
		{"_x", true},
		{"", false},
		{".x", false},
		{"-x", false},
		{"a/b", false},
		{"a:b", false},
		{"a\x00", false},
		{strings.Repeat("t", 128), true},
		{strings.Repeat("t", 129), false},
	}
	for _, tt := range tests {
		if err := manifest.ValidateTag(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestValidateFilename(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"memory-ranges", true},
		{"overlay.qcow2", true},
		{"a..b", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/abs", false},
		{`a\b`, false},
		{"a\x00b", false},
		{"a\nb", false},
		{strings.Repeat("f", 255), true},
		{strings.Repeat("f", 256), false},
	}
	for _, tt := range tests {
		if err := manifest.ValidateFilename(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateFilename(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, name, tag string
		ok            bool
	}{
		{"repo", "repo", "latest", true},
		{"repo:v1", "repo", "v1", true},
		{"team/repo:hibernate", "team/repo", "hibernate", true},
		{"team/repo", "team/repo", "latest", true},
		{"repo:", "", "", false},
		{":tag", "", "", false},
		{"host:5000/repo", "", "", false}, // ':' before the last '/' is not a tag
		{"repo:a:b", "", "", false},
		{"Repo:v1", "", "", false},
		{"a//b:v1", "", "", false},
	}
	for _, tt := range tests {
		name, tag, err := manifest.ParseReference(tt.in)
		if (err == nil) != tt.ok || name != tt.name || tag != tt.tag {
			t.Errorf("ParseReference(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, name, tag, err, tt.name, tt.tag, tt.ok)
		}
	}
}

func TestMediaTypeFor(t *testing.T) {
	tests := map[string]string{
		"overlay.qcow2": manifest.MediaTypeDiskQcow2,
		"cow.raw":       manifest.MediaTypeDiskRaw,
		"data-1.raw":    manifest.MediaTypeDiskRaw,
		"memory-ranges": manifest.MediaTypeMemory,
		"mem":           manifest.MediaTypeMemory,
		"cidata.img":    manifest.MediaTypeCIData,
		"config.json":   manifest.MediaTypeConfig,
		"state.json":    manifest.MediaTypeState,
		"vmstate":       manifest.MediaTypeOctetStream,
	}
	for in, want := range tests {
		if got := manifest.MediaTypeFor(in); got != want {
			t.Errorf("MediaTypeFor(%q) = %q, want %q", in, got, want)
		}
	}
}
