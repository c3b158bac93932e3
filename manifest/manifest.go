package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Media types of snapshot files, as Epoch v0.1.x wrote them.
const (
	MediaTypeDiskQcow2   = "application/vnd.cocoon.disk.qcow2"
	MediaTypeDiskRaw     = "application/vnd.cocoon.disk.raw"
	MediaTypeMemory      = "application/vnd.cocoon.memory"
	MediaTypeCIData      = "application/vnd.cocoon.cidata"
	MediaTypeConfig      = "application/vnd.cocoon.config+json"
	MediaTypeState       = "application/vnd.cocoon.state+json"
	MediaTypeOctetStream = "application/octet-stream"
)

const (
	// SchemaVersion is the only manifest schema version Parse accepts.
	SchemaVersion = 1

	// MaxManifestSize caps the input of Parse. Real manifests are a few KiB;
	// the cap keeps a hostile or broken object from costing memory.
	MaxManifestSize = 16 << 20

	// MaxSize bounds every size in a manifest or recipe (1 PiB). It keeps
	// sums of sizes far from int64 overflow and turns hostile huge sizes
	// into errors instead of allocations.
	MaxSize = 1 << 50
)

var (
	// ErrInvalidManifest is returned for a manifest that is not well formed.
	ErrInvalidManifest = errors.New("invalid manifest")

	// ErrManifestTooLarge is returned by Parse for input above MaxManifestSize.
	ErrManifestTooLarge = errors.New("manifest too large")

	// knownManifestKeys holds the JSON keys Manifest maps to fields; any other
	// key goes to Manifest.Extra. Computed once from the struct tags so the two
	// cannot drift; never written after initialisation.
	knownManifestKeys = jsonKeys(reflect.TypeFor[manifestFields]())
)

// Manifest describes one revision (name:tag) of a snapshot. It is JSON
// compatible with Epoch v0.1.x (schemaVersion 1): old readers ignore the new
// layer fields, and fields this code does not know survive in Extra.
type Manifest struct {
	SchemaVersion int                 `json:"schemaVersion"`
	Name          string              `json:"name"`
	Tag           string              `json:"tag"`
	SnapshotID    string              `json:"snapshotId"`
	Image         string              `json:"image"`
	ImageBlobIDs  map[string]struct{} `json:"imageBlobIDs,omitempty"`
	CPU           int                 `json:"cpu,omitempty"`
	Memory        int64               `json:"memory,omitempty"`
	Storage       int64               `json:"storage,omitempty"`
	NICs          int                 `json:"nics,omitempty"`
	Layers        []Layer             `json:"layers"`
	BaseImages    []BaseImage         `json:"baseImages,omitempty"`
	TotalSize     int64               `json:"totalSize"`
	CreatedAt     time.Time           `json:"createdAt"`
	PushedAt      time.Time           `json:"pushedAt"`

	// Extra holds top-level fields this version does not know, so that a
	// manifest written by a newer version round-trips through this one.
	// Keys that name a known field are ignored on Marshal.
	Extra map[string]json.RawMessage `json:"-"`
}

// Layer is one file of a snapshot.
type Layer struct {
	// Digest is the SHA-256 hex of the whole file, as in Epoch v0.1.x.
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Filename  string `json:"filename"`
	MediaType string `json:"mediaType"`
	// Recipe is the hex ID of the file's recipe object (full or patch);
	// empty for a file stored only as a whole blob.
	Recipe string `json:"recipe,omitempty"`
	// Mode holds the file's permission bits (os.FileMode.Perm, at most 0o777); zero means
	// the puller's default.
	Mode uint32 `json:"mode,omitempty"`
	// Chunker names the chunking used to build the recipe (informational:
	// a recipe is readable without knowing how it was cut).
	Chunker string `json:"chunker,omitempty"`
}

// BaseImage is a base image blob a snapshot needs (a cloud image the qcow2
// overlay points to). It has the same shape as a Layer.
type BaseImage = Layer

// Catalog lists repositories and their tags (catalog.json).
type Catalog struct {
	Repositories map[string]*Repository `json:"repositories"`
	UpdatedAt    time.Time              `json:"updatedAt"`
}

// Repository maps tags to manifest digests.
type Repository struct {
	Tags      map[string]string `json:"tags"`
	UpdatedAt time.Time         `json:"updatedAt"`
}

// manifestFields has Manifest's fields without its methods, so the custom
// (un)marshalers can use the default encoding without recursing.
type manifestFields Manifest

// MediaTypeFor returns the media type Epoch uses for a snapshot file name.
func MediaTypeFor(filename string) string {
	switch {
	case strings.HasSuffix(filename, ".qcow2"):
		return MediaTypeDiskQcow2
	case strings.HasSuffix(filename, ".raw"):
		return MediaTypeDiskRaw
	case filename == "memory-ranges", filename == "mem":
		return MediaTypeMemory
	case strings.HasPrefix(filename, "cidata"):
		return MediaTypeCIData
	case filename == "config.json":
		return MediaTypeConfig
	case filename == "state.json":
		return MediaTypeState
	default:
		return MediaTypeOctetStream
	}
}

// Digest returns the SHA-256 hex of data: the manifest's content digest is
// taken over the exact stored bytes, never over a re-encoding.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Parse decodes and validates a manifest. Every error wraps
// ErrInvalidManifest or ErrManifestTooLarge and names the offending field.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("parse manifest: %w: %d bytes, limit %d", ErrManifestTooLarge, len(data), MaxManifestSize)
	}
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w: %w", ErrInvalidManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	return m, nil
}

// Validate checks what Parse checks. A puller must not act on a manifest
// that fails it: its file names become paths, its sizes allocations.
func (m *Manifest) Validate() error {
	if m.SchemaVersion != SchemaVersion {
		return fmt.Errorf("%w: schemaVersion %d, want %d", ErrInvalidManifest, m.SchemaVersion, SchemaVersion)
	}
	if err := ValidateName(m.Name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalidManifest, err)
	}
	if err := ValidateTag(m.Tag); err != nil {
		return fmt.Errorf("%w: tag: %w", ErrInvalidManifest, err)
	}
	if err := checkSize("totalSize", m.TotalSize); err != nil {
		return err
	}
	if err := checkSize("memory", m.Memory); err != nil {
		return err
	}
	if err := checkSize("storage", m.Storage); err != nil {
		return err
	}
	if m.CPU < 0 || m.NICs < 0 {
		return fmt.Errorf("%w: cpu %d / nics %d must not be negative", ErrInvalidManifest, m.CPU, m.NICs)
	}
	if err := validateLayers("layers", m.Layers); err != nil {
		return err
	}
	return validateLayers("baseImages", m.BaseImages)
}

// Marshal encodes m as indented JSON, including Extra.
func (m *Manifest) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal manifest: %w", err)
	}
	return data, nil
}

// MarshalJSON implements json.Marshaler: the known fields, then Extra's keys
// in sorted order.
func (m Manifest) MarshalJSON() ([]byte, error) {
	known, err := json.Marshal(manifestFields(m))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(m.Extra))
	for k := range m.Extra {
		if _, ok := knownManifestKeys[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return known, nil
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Write(known[:len(known)-1]) // drop the closing brace
	for _, k := range keys {
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		v := m.Extra[k]
		if !json.Valid(v) {
			return nil, fmt.Errorf("extra field %q: invalid json", k)
		}
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON implements json.Unmarshaler, keeping unknown keys in Extra.
func (m *Manifest) UnmarshalJSON(data []byte) error {
	var f manifestFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for k := range all {
		if _, ok := knownManifestKeys[k]; ok {
			delete(all, k)
		}
	}
	if len(all) == 0 {
		all = nil
	}
	f.Extra = all
	*m = Manifest(f)
	return nil
}

func validateLayers(field string, layers []Layer) error {
	seen := make(map[string]struct{}, len(layers))
	for i := range layers {
		l := &layers[i]
		if err := ValidateFilename(l.Filename); err != nil {
			return fmt.Errorf("%w: %s[%d].filename: %w", ErrInvalidManifest, field, i, err)
		}
		if _, dup := seen[l.Filename]; dup {
			return fmt.Errorf("%w: %s[%d].filename: %q appears twice", ErrInvalidManifest, field, i, l.Filename)
		}
		seen[l.Filename] = struct{}{}
		if !isHex64(l.Digest) {
			return fmt.Errorf("%w: %s[%d].digest: %q is not 64 lowercase hex digits", ErrInvalidManifest, field, i, clip(l.Digest))
		}
		if err := checkSize(fmt.Sprintf("%s[%d].size", field, i), l.Size); err != nil {
			return err
		}
		if l.Recipe != "" && !isHex64(l.Recipe) {
			return fmt.Errorf("%w: %s[%d].recipe: %q is not 64 lowercase hex digits", ErrInvalidManifest, field, i, clip(l.Recipe))
		}
		if l.Mode&^0o777 != 0 {
			return fmt.Errorf("%w: %s[%d].mode: %#o has bits beyond permissions", ErrInvalidManifest, field, i, l.Mode)
		}
	}
	return nil
}

func checkSize(field string, v int64) error {
	if v < 0 || v >= MaxSize {
		return fmt.Errorf("%w: %s: %d out of range [0, 2^50)", ErrInvalidManifest, field, v)
	}
	return nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	const maxShown = 80
	if len(s) > maxShown {
		return s[:maxShown] + "..."
	}
	return s
}

func jsonKeys(t reflect.Type) map[string]struct{} {
	keys := make(map[string]struct{}, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = struct{}{}
	}
	return keys
}
