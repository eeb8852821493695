package deps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPathAndMissing(t *testing.T) {
	root := t.TempDir()
	sh := Program{Name: "sh", Bins: []string{"no-such-program-here", "sh"}, Apt: []string{"dash"}}
	none := Program{Name: "none", Bins: []string{"no-such-program-here"}, Apt: []string{"none-pkg"}}
	npm := Program{Name: "a CLI", Npm: "@x/cli@1.0.0", NpmBin: "node_modules/.bin/x"}
	if _, ok := sh.Path(root); !ok {
		t.Error("sh not found")
	}
	if got := Names(Missing(root, []Program{sh, none, npm})); got != "none, a CLI" {
		t.Errorf("missing: %q", got)
	}
	bin := filepath.Join(NpmPrefix(root), npm.NpmBin)
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	if p, ok := npm.Path(root); !ok || p != bin {
		t.Errorf("npm program: %q %v", p, ok)
	}
	t.Setenv("SH_PATH", "/bin/sh")
	env := Program{Name: "env", Env: "SH_PATH", Bins: []string{"no-such-program-here"}}
	if p, ok := env.Path(root); !ok || p != "/bin/sh" {
		t.Errorf("from $SH_PATH: %q %v", p, ok)
	}
	withFile := Program{Name: "f", Bins: []string{"sh"}, Files: []string{filepath.Join(root, "absent.xml")}}
	if _, ok := withFile.Path(root); ok {
		t.Error("found although its file is absent")
	}
}

func TestAdvice(t *testing.T) {
	a := Advice([]Program{Chromium, FastlyCLI, ClickHouse, ClickHouseClient})
	for _, want := range []string{
		"missing: chromium, the Fastly CLI, clickhouse-server, clickhouse-client\n",
		"make deps",
		"apt-get install -y chromium clickhouse-server clickhouse-client &&", // each package once
		"npm install --prefix .edgepixel/npm @fastly/cli@",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("advice lacks %q:\n%s", want, a)
		}
	}
}

func TestInstallNothingMissing(t *testing.T) {
	if err := Install(context.Background(), t.TempDir(), []Program{{Name: "sh", Bins: []string{"sh"}}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestInstead: a program made unneeded by another on PATH (the LLVM
// packages TinyGo is built with, by a tinygo release) is found as that one.
func TestInstead(t *testing.T) {
	root := t.TempDir()
	p := Program{Name: "llvm", Files: []string{filepath.Join(root, "absent.h")}, Apt: []string{"llvm-dev"}, Instead: "fake-tinygo"}
	if _, ok := p.Path(root); ok {
		t.Fatal("found although neither it nor its replacement is installed")
	}
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "fake-tinygo"), []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if path, ok := p.Path(root); !ok || path != filepath.Join(bin, "fake-tinygo") {
		t.Errorf("with its replacement on PATH: %q %v", path, ok)
	}
	for _, f := range TinyGoLLVM.Files {
		if !filepath.IsAbs(f) {
			t.Errorf("%s: not an absolute path", f)
		}
	}
}
