package snapgen

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// SnapshotSpec describes a VM whose snapshots a Series generates.
type SnapshotSpec struct {
	Name       string // snapshot name in snapshots.json; "snapgen-vm" if empty
	ID         string // 26-char lower-case base32; derived from Seed if empty
	MemorySize int64  // guest RAM in bytes; 64 MiB if zero
	DiskSize   int64  // initial overlay.qcow2 file size in bytes; 8 MiB if zero
	Seed       uint64
}

// Memory defaults for a Series: about what an idle Linux guest shows.
const (
	seriesZeroFraction    = 0.3
	seriesCompressibility = 0.5
	baseImageSize         = 4 << 20
	cidataSize            = 1 << 20
	seriesCPU             = 2
)

// epoch is the created_at of revision 0; each revision is an hour later, so
// the JSON files are byte-identical across runs.
var epoch = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

// Revision is one saved state of the VM.
type Revision struct {
	N       int // 0 for the first revision
	Memory  *Memory
	Overlay *Overlay // without backing path; WriteSnapshot sets it
}

// Series generates successive snapshots of one VM.
type Series struct {
	spec SnapshotSpec
	id   string
	base *Overlay // the cloud image the overlay sits on; stable
	cur  *Revision
}

// NewSnapshotSeries returns a series positioned at revision 0.
func NewSnapshotSeries(spec SnapshotSpec) *Series {
	if spec.Name == "" {
		spec.Name = "snapgen-vm"
	}
	if spec.MemorySize == 0 {
		spec.MemorySize = 64 << 20
	}
	if spec.DiskSize == 0 {
		spec.DiskSize = 8 << 20
	}
	id := spec.ID
	if id == "" {
		id = makeID(derive(spec.Seed, 0x6964))
	}
	return &Series{
		spec: spec,
		id:   id,
		base: NewOverlay(OverlaySpec{Size: baseImageSize, Seed: derive(spec.Seed, 0x62617365)}),
		cur: &Revision{
			Memory: NewMemory(MemorySpec{
				Size:            spec.MemorySize,
				ZeroFraction:    seriesZeroFraction,
				Compressibility: seriesCompressibility,
				Seed:            derive(spec.Seed, 0x6d656d),
			}),
			Overlay: NewOverlay(OverlaySpec{Size: spec.DiskSize, Seed: derive(spec.Seed, 0x6f766c)}),
		},
	}
}

// makeID returns a Cocoon-style ID: 16 bytes as 26 chars of unpadded
// lower-case base32.
func makeID(seed uint64) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], mix64(seed))
	binary.LittleEndian.PutUint64(b[8:], mix64(seed^0xa5a5a5a5a5a5a5a5))
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return enc.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// ID returns the snapshot ID.
func (s *Series) ID() string { return s.id }

// Name returns the snapshot name.
func (s *Series) Name() string { return s.spec.Name }

// Current returns the current revision.
func (s *Series) Current() *Revision { return s.cur }

// BaseImage returns the cloud image the overlays are backed by.
func (s *Series) BaseImage() *Overlay { return s.base }

// Next advances the series by one save: memory changes as change says, the
// overlay grows by diskGrow bytes and has diskRewrite of its data rewritten.
// The random choices derive from the spec seed and the revision number.
func (s *Series) Next(change MemoryChange, diskGrow int64, diskRewrite float64) *Revision {
	n := s.cur.N + 1
	seed := derive(s.spec.Seed, 0x726576^uint64(n)<<24)
	s.cur = &Revision{
		N:       n,
		Memory:  s.cur.Memory.Next(change, derive(seed, 1)),
		Overlay: s.cur.Overlay.Next(diskGrow, diskRewrite, derive(seed, 2)),
	}
	return s.cur
}

// WriteSnapshot writes the current revision as a Cocoon snapshot under root:
// the files in <root>/snapshot/localfile/<id>/, the base image in
// <root>/cloudimg/blobs/<sha256>.qcow2, and this snapshot's record in
// <root>/snapshot/db/snapshots.json (other records are kept; a new DB also
// gets a record of another VM so tests can check foreign records survive).
func (s *Series) WriteSnapshot(root string) (id string, err error) {
	if !validID(s.id) {
		return "", fmt.Errorf("write snapshot: invalid snapshot id %q: want 26 chars of [a-z2-7]", s.id)
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", fmt.Errorf("write snapshot: resolve root: %w", err)
	}
	blobHex, err := s.writeBaseImage(root)
	if err != nil {
		return "", err
	}
	blobPath := filepath.Join(root, "cloudimg", "blobs", blobHex+".qcow2")
	dataDir := filepath.Join(root, "snapshot", "localfile", s.id)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("write snapshot: create data dir: %w", err)
	}
	rev := s.cur
	if err := rev.Memory.WriteFile(filepath.Join(dataDir, "memory-ranges"), true); err != nil {
		return "", fmt.Errorf("write snapshot %s: %w", s.id, err)
	}
	if err := rev.Overlay.WithBacking(blobPath).WriteFile(filepath.Join(dataDir, "overlay.qcow2"), false); err != nil {
		return "", fmt.Errorf("write snapshot %s: %w", s.id, err)
	}
	if err := s.cidata().writeFile(filepath.Join(dataDir, "cidata.img"), false); err != nil {
		return "", fmt.Errorf("write snapshot %s: cidata.img: %w", s.id, err)
	}
	files := []struct {
		name   string
		v      any
		indent bool
	}{
		// Cloud Hypervisor writes compact JSON; Cocoon's own files are indented.
		{"config.json", s.chConfig(dataDir), false},
		{"state.json", s.chState(), false},
		{"cocoon.json", s.cocoonMeta(blobHex), true},
	}
	for _, f := range files {
		if err := writeJSON(filepath.Join(dataDir, f.name), f.v, f.indent, false); err != nil {
			return "", fmt.Errorf("write snapshot %s: %w", s.id, err)
		}
	}
	if err := s.updateDB(root, blobHex, dataDir); err != nil {
		return "", fmt.Errorf("write snapshot %s: %w", s.id, err)
	}
	return s.id, nil
}

// writeBaseImage writes the cloud image under its own SHA-256 unless a file
// of that name is already there, and returns the hex digest.
func (s *Series) writeBaseImage(root string) (string, error) {
	h := sha256.New()
	if _, err := s.base.WriteTo(h); err != nil {
		return "", fmt.Errorf("write snapshot: hash base image: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(root, "cloudimg", "blobs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write snapshot: create blob dir: %w", err)
	}
	path := filepath.Join(dir, sum+".qcow2")
	if _, err := os.Stat(path); err == nil {
		return sum, nil
	}
	// Temp + rename: a half-written file must never carry the digest name.
	tmp := path + ".tmp"
	if err := s.base.WriteFile(tmp, false); err != nil {
		return "", fmt.Errorf("write snapshot: base image: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write snapshot: publish base image: %w", err)
	}
	return sum, nil
}

// cidata returns the 1 MiB cloud-init seed disk: a labelled header and a few
// pages of text, the rest zero. It depends on the spec seed only.
func (s *Series) cidata() *pageImage {
	n := pagesFor(cidataSize)
	pages := make([]uint64, n)
	for i := int64(1); i < 8; i++ {
		pages[i] = nonZero(derive(s.spec.Seed, 0x636964^uint64(i)<<24))
	}
	hdr := make([]byte, PageSize)
	copy(hdr, "\xeb\x3c\x90MSWIN4.1")
	copy(hdr[43:], "cidata     FAT12   ")
	hdr[510], hdr[511] = 0x55, 0xaa
	return &pageImage{size: cidataSize, pages: pages, text: PageSize, header: hdr}
}

func (s *Series) createdAt(n int) string {
	return epoch.Add(time.Duration(n) * time.Hour).Format(time.RFC3339)
}

// mac returns a stable locally administered MAC address for the VM.
func (s *Series) mac() string {
	v := derive(s.spec.Seed, 0x6d6163)
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32))
}

// chConfig is a Cloud Hypervisor config.json (~2 KB). The balloon size
// changes per revision, so the file differs slightly between saves.
func (s *Series) chConfig(dataDir string) map[string]any {
	n := s.cur.N
	return map[string]any{
		"cpus": map[string]any{
			"boot_vcpus": seriesCPU, "max_vcpus": seriesCPU, "topology": nil,
			"kvm_hyperv": false, "max_phys_bits": 46, "affinity": nil,
			"features": map[string]any{"amx": false},
		},
		"memory": map[string]any{
			"size": s.spec.MemorySize, "mergeable": false, "hotplug_method": "Acpi",
			"hotplug_size": nil, "hotplugged_size": nil, "shared": false,
			"hugepages": false, "hugepage_size": nil, "prefault": false, "zones": nil, "thp": true,
		},
		"payload": map[string]any{
			"firmware": "/usr/share/cloud-hypervisor/CLOUDHV.fd",
			"kernel":   nil, "cmdline": nil, "initramfs": nil,
		},
		"rate_limit_groups": nil,
		"disks": []any{
			map[string]any{
				"path": filepath.Join(dataDir, "overlay.qcow2"), "readonly": false, "direct": true,
				"iommu": false, "num_queues": seriesCPU, "queue_size": 256, "vhost_user": false,
				"vhost_socket": nil, "rate_limit_group": nil, "rate_limiter_config": nil,
				"id": "_disk0", "disable_io_uring": false, "disable_aio": false,
				"pci_segment": 0, "serial": nil, "queue_affinity": nil,
			},
			map[string]any{
				"path": filepath.Join(dataDir, "cidata.img"), "readonly": true, "direct": false,
				"iommu": false, "num_queues": 1, "queue_size": 128, "vhost_user": false,
				"id": "_disk1", "pci_segment": 0,
			},
		},
		"net": []any{map[string]any{
			"tap": "cocoon-" + s.id[:8], "ip": "192.168.249.1", "mask": "255.255.255.0",
			"mac": s.mac(), "host_mac": nil, "mtu": 1500, "iommu": false, "num_queues": 2,
			"queue_size": 256, "vhost_user": false, "vhost_socket": nil, "vhost_mode": "Client",
			"id": "_net2", "fds": nil, "rate_limiter_config": nil, "pci_segment": 0, "offload_tso": true,
			"offload_ufo": true, "offload_csum": true,
		}},
		"rng":      map[string]any{"src": "/dev/urandom", "iommu": false},
		"balloon":  map[string]any{"size": int64(n%8) * 16 << 20, "deflate_on_oom": true, "free_page_reporting": true},
		"serial":   map[string]any{"file": nil, "mode": "Null", "iommu": false, "socket": nil},
		"console":  map[string]any{"file": nil, "mode": "Pty", "iommu": false, "socket": nil},
		"iommu":    false,
		"watchdog": false,
		"pvpanic":  false,
		"platform": map[string]any{"num_pci_segments": 1, "iommu_segments": nil, "serial_number": nil, "uuid": s.id, "oem_strings": nil},
	}
}

// chState is a Cloud Hypervisor-like state.json of about 300 KB: device
// states as arrays of byte values (as serde writes Vec<u8>). Device blobs
// depend on the spec seed only; vCPU registers, the clock and virtqueue
// indexes change per revision, so saves differ in small scattered places and
// some of those changes shift the bytes after them.
func (s *Series) chState() map[string]any {
	n := uint64(s.cur.N)
	blob := func(seed uint64, size int) []int {
		r := newRand(seed, 0x626c6f62)
		out := make([]int, size)
		for i := range out {
			// Register files and device state are mostly zero or small.
			if r.IntN(2) == 0 {
				out[i] = r.IntN(256)
			}
		}
		return out
	}
	devices := map[string]any{}
	for d := range 40 {
		id := fmt.Sprintf("_virtio-dev%02d", d)
		devices[id] = map[string]any{
			"id": id,
			"snapshot_data": map[string]any{
				"device_state": blob(derive(s.spec.Seed, 0x646576^uint64(d)<<24), 2600),
				"queues": []any{
					map[string]any{"size": 256, "ready": true, "next_avail": (n*37 + uint64(d)*11) % 65536, "next_used": (n*37 + uint64(d)*7) % 65536},
				},
			},
		}
	}
	vcpus := map[string]any{}
	for c := range seriesCPU {
		vcpus[fmt.Sprint(c)] = map[string]any{
			"id":            fmt.Sprint(c),
			"snapshot_data": map[string]any{"regs": blob(derive(s.spec.Seed, n<<32|uint64(c)<<8|0x76), 1024)},
		}
	}
	return map[string]any{
		"version": "v44.0",
		"snapshots": map[string]any{
			"cpu-manager":    map[string]any{"id": "cpu-manager", "snapshots": vcpus},
			"device-manager": map[string]any{"id": "device-manager", "snapshots": devices},
			"memory-manager": map[string]any{"id": "memory-manager", "snapshot_data": map[string]any{
				"memory_ranges": []any{map[string]any{"gpa": 0, "size": s.spec.MemorySize}},
			}},
			"clock": map[string]any{"tsc": 1_000_000_007*n + derive(s.spec.Seed, 0x74736)%1_000_000},
		},
	}
}

func (s *Series) cocoonMeta(blobHex string) map[string]any {
	return map[string]any{
		"id": s.id, "name": s.spec.Name, "hypervisor": "cloud-hypervisor",
		"image_type": "cloudimg", "image_blob_ids": map[string]any{blobHex: map[string]any{}},
		"cpu": seriesCPU, "memory": s.spec.MemorySize, "storage": int64(DefaultVirtualSize),
		"revision": s.cur.N, "created_at": s.createdAt(s.cur.N),
	}
}

// updateDB adds or replaces this snapshot's record in snapshots.json and
// keeps everything else, fields this package does not know included. The
// write is temp + rename, as Cocoon does; Cocoon's flock is not taken since
// test roots have no Cocoon process.
func (s *Series) updateDB(root, blobHex, dataDir string) error {
	path := filepath.Join(root, "snapshot", "db", "snapshots.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create db dir: %w", err)
	}
	db := map[string]any{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		db["snapshots"] = map[string]any{}
		db["names"] = map[string]any{}
		s.addForeign(root, db)
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	default:
		if err := json.Unmarshal(data, &db); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
	}
	snaps, err := objectField(db, "snapshots")
	if err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	names, err := objectField(db, "names")
	if err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	snaps[s.id] = map[string]any{
		"id": s.id, "name": s.spec.Name, "description": "generated by snapgen",
		"image":      "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img",
		"image_type": "cloudimg", "image_blob_ids": map[string]any{blobHex: map[string]any{}},
		"hypervisor": "cloud-hypervisor", "cpu": seriesCPU, "memory": s.spec.MemorySize,
		"storage": int64(DefaultVirtualSize), "created_at": s.createdAt(s.cur.N), "data_dir": dataDir,
		// A field this registry does not know: it must survive a round trip.
		"future_field": map[string]any{"x": 1},
	}
	names[s.spec.Name] = s.id
	return writeJSON(path, db, true, true)
}

// objectField returns db[key] as an object, creating it when absent.
func objectField(db map[string]any, key string) (map[string]any, error) {
	switch v := db[key].(type) {
	case nil:
		m := map[string]any{}
		db[key] = m
		return m, nil
	case map[string]any:
		return v, nil
	default:
		return nil, fmt.Errorf("%q is %T, want an object", key, v)
	}
}

// addForeign adds the record of another VM, as a Cocoon node always has.
func (s *Series) addForeign(root string, db map[string]any) {
	id := makeID(derive(s.spec.Seed, 0x666f72))
	name := s.spec.Name + "-other"
	db["snapshots"].(map[string]any)[id] = map[string]any{
		"id": id, "name": name, "image": "ghcr.io/example/other:1", "image_type": "oci",
		"image_digest": fmt.Sprintf("sha256:%016x%016x%016x%016x", derive(s.spec.Seed, 1), derive(s.spec.Seed, 2), derive(s.spec.Seed, 3), derive(s.spec.Seed, 4)),
		"hypervisor":   "firecracker", "cpu": 1, "memory": int64(512 << 20), "storage": int64(4 << 30),
		"created_at": s.createdAt(0), "data_dir": filepath.Join(root, "snapshot", "localfile", id),
		"nics":         []any{map[string]any{"mac": "02:00:00:00:00:01"}},
		"future_field": map[string]any{"x": 2},
	}
	db["names"].(map[string]any)[name] = id
}

// writeJSON writes v, indented or compact; atomic writes go through a temp
// file and rename.
func writeJSON(path string, v any, indent, atomic bool) error {
	var data []byte
	var err error
	if indent {
		data, err = json.MarshalIndent(v, "", "  ")
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	data = append(data, '\n')
	dst := path
	if atomic {
		dst = path + ".tmp"
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if atomic {
		if err := os.Rename(dst, path); err != nil {
			return fmt.Errorf("publish %s: %w", path, err)
		}
	}
	return nil
}
