package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadEdgeConfig(t *testing.T) {
	dir := t.TempDir()
	if cfg, err := readEdgeConfig(dir); err != nil || cfg != nil {
		t.Fatalf("no file: %v, %v; want no settings", cfg, err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, edgeConfigFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("\"site.shop\" = \"sign=reject tier=aggregate\"\nrate_limit_client = \"50\"\n")
	cfg, err := readEdgeConfig(dir)
	if err != nil || cfg["site.shop"] != "sign=reject tier=aggregate" || cfg["rate_limit_client"] != "50" || len(cfg) != 2 {
		t.Fatalf("got %v, %v", cfg, err)
	}
	write("rate_limit_client = 50\n")
	if _, err := readEdgeConfig(dir); err == nil || !strings.Contains(err.Error(), `rate_limit_client = "50"`) {
		t.Errorf("a number: %v; want an error saying to quote it", err)
	}
	// An unquoted dotted key is a TOML table: the hint quoted the
	// table's Go form as a value (site = "map[dotted:sign=reject]"); it
	// is the key that needs quotes (found by a new-user tester).
	for _, tc := range []struct{ toml, want string }{
		{"site.dotted = \"sign=reject\"\n", `write "site.dotted" = "sign=reject"`},
		{"site.shop.example = \"tier=aggregate\"\n", `write "site.shop.example" = "tier=aggregate"`},
		{"[site]\nshop = \"sign=mark\"\n", `write "site.shop" = "sign=mark"`},
	} {
		write(tc.toml)
		_, err := readEdgeConfig(dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "map[") {
			t.Errorf("%q: %v; want an error saying %s", tc.toml, err, tc.want)
		}
	}
	write("site.shop = \n")
	if _, err := readEdgeConfig(dir); err == nil || !strings.Contains(err.Error(), edgeConfigFile) {
		t.Errorf("bad TOML: %v; want an error naming the file", err)
	}
}

// The launcher's salts come from the real edgepixel-salt: a first run
// writes today's salt into the secrets directory, a second the same day
// writes nothing (so the POP is not told to re-read).
func TestSaltsRotate(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "edgepixel-salt")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/edgepixel/edgepixel/edge/cmd/edgepixel-salt").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := salts{bin: bin, dir: filepath.Join(t.TempDir(), "secrets"), log: slog.Default()}
	wrote, err := s.rotate(context.Background())
	if err != nil || !wrote {
		t.Fatalf("first rotate: wrote %v, %v", wrote, err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("secrets dir after the first rotate: %v, %v", ents, err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "visitor_salt_") {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
	if wrote, err := s.rotate(context.Background()); err != nil || wrote {
		t.Errorf("second rotate the same hour: wrote %v, %v; want nothing written", wrote, err)
	}
	s.bin = filepath.Join(t.TempDir(), "missing")
	if _, err := s.rotate(context.Background()); err == nil {
		t.Error("a missing edgepixel-salt: no error")
	}
}
