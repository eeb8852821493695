package stack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every file in Dir/secrets is an edge secret, but not what an editor
// leaves beside a secret it edits; a name the POP would refuse stops the
// start at once, naming the file.
func TestSecretNames(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pixel_key.shop", "visitor_salt_0", "pixel_key.shop~", "pixel_key.shop.swp", ".pixel_key.shop.swp", "#pixel_key.shop#", ".hidden"} {
		if err := os.WriteFile(filepath.Join(secrets, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := &Stack{opts: Options{Dir: dir}}
	names, err := s.secretNames()
	if err != nil || !slices.Equal(names, []string{"pixel_key.shop", "visitor_salt_0"}) {
		t.Fatalf("secretNames = %q, %v", names, err)
	}

	bad := filepath.Join(secrets, "pixel key.shop")
	if err := os.WriteFile(bad, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.secretNames(); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "rename or remove") {
		t.Fatalf("a file with a space in its name: %v", err)
	}
	// Start says so before it starts anything.
	_, err = Start(context.Background(), Options{Dir: dir, NoRedis: true, NoClickHouse: true})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Start = %v, want the bad file named", err)
	}
}
