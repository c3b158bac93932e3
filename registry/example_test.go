package registry_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// The vk-cocoon integration from Epoch's documentation, unchanged but for
// the import path: a Puller made from a ConfigMap, pre-warmed at startup,
// and EnsureSnapshot before every clone.
func ExamplePuller() {
	ctx := context.Background()
	image := "sre-agent-bot"

	// Create puller — reads object store settings from a k8s ConfigMap.
	puller, err := registry.NewPuller("/var/lib/cocoon", "prod", "agent-env")
	if err != nil {
		log.Fatalf("epoch puller: %v", err)
	}

	// Pre-warm known snapshots at startup (non-blocking).
	puller.PreWarm(ctx, []string{"sre-agent-bot", "sre-agent-diagnosis"})

	// In the provider's CreatePod, before calling `cocoon vm clone`:
	if err := puller.EnsureSnapshot(ctx, image); err != nil {
		log.Fatalf("epoch ensure %s: %v", image, err)
	}
	// Now safe to: cocoon vm clone --cold <image>
}

// Push a file as a blob to the embedded folder store and pull it back on a
// node that has none of its chunks.
func ExampleRegistry_PushBlob() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example-*")
	defer os.RemoveAll(dir)

	store, err := objectstore.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	reg := registry.New(store, registry.WithCacheDir(filepath.Join(dir, "cache")))
	defer reg.Close()

	src := filepath.Join(dir, "config.json")
	_ = os.WriteFile(src, []byte(`{"cpu": 2, "memory": "4G"}`), 0o644)
	digest, size, err := reg.PushBlob(ctx, src)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(digest, size)

	other := registry.New(store, registry.WithCacheDir(filepath.Join(dir, "other-node")))
	defer other.Close()
	if err := other.PullBlob(ctx, digest, filepath.Join(dir, "copy.json")); err != nil {
		log.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "copy.json"))
	fmt.Println(string(data))
	// Output:
	// e37d2d14bdea75eec483e43fb2767d352c2847e7ddc3ac4c305a601e66b251a7 26
	// {"cpu": 2, "memory": "4G"}
}
