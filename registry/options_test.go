package registry_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restic/chunker"

	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// storeConfigPolynomial reads the chunker polynomial a store recorded.
func storeConfigPolynomial(t *testing.T, store *objectstore.Client) string {
	t.Helper()
	data, _, err := store.GetBytes(context.Background(), "config.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Polynomial string `json:"chunkerPolynomial"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Polynomial
}

func TestWithPolynomial(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		pol     chunker.Pol
		wantErr string
	}{
		{"restic test polynomial", 0x3DA3358B4DC173, ""},
		{"zero", 0, "not an irreducible polynomial of degree 53"},
		{"reducible", 0x3DA3358B4DC172, "not an irreducible polynomial of degree 53"},
		{"irreducible of low degree", 0x7, "not an irreducible polynomial of degree 53"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := objectstore.NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "blob.tar")
			writeImage(t, src, 64, 1)
			r := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithPolynomial(tc.pol))
			defer r.Close()
			_, _, err = r.PushBlob(ctx, src)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PushBlob = %v, want an error containing %q", err, tc.wantErr)
				}
				if _, statErr := store.Stat(ctx, "config.json"); statErr == nil {
					t.Fatal("a refused option still created the store config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := storeConfigPolynomial(t, store); got != "0x3da3358b4dc173" {
				t.Fatalf("store config polynomial %s, want 0x3da3358b4dc173", got)
			}
			// An existing store keeps its polynomial whatever the option says.
			other := registry.New(store, registry.WithCacheDir(t.TempDir()), registry.WithPolynomial(0x2491db933a36c9))
			defer other.Close()
			if _, _, err := other.PushBlob(ctx, src); err != nil {
				t.Fatal(err)
			}
			if got := storeConfigPolynomial(t, store); got != "0x3da3358b4dc173" {
				t.Fatalf("store config polynomial changed to %s", got)
			}
		})
	}
}
