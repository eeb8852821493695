package build

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	ctx := context.Background()
	cmd, err := Edge.Command(ctx, Go, "/repo", "/out/edgepixel.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cmd.Args, " "); got != "go build -trimpath -o /out/edgepixel.wasm ./edge/cmd/edgepixel" || cmd.Dir != "/repo" {
		t.Errorf("edge module: %q in %q", got, cmd.Dir)
	}
	if !slices.Contains(cmd.Env, "GOOS=wasip1") || !slices.Contains(cmd.Env, "GOARCH=wasm") {
		t.Errorf("edge module built without GOOS=wasip1 GOARCH=wasm")
	}
	cmd, err = Pop.Command(ctx, Go, "/repo", "/out/edgepixel-pop")
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Env != nil {
		t.Errorf("the POP is built for this machine, got env %v", cmd.Env)
	}
	cmd, err = Worker.Command(ctx, Go, "/repo", "/out/w.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cmd.Args, " "); got != "go build -trimpath -o /out/w.wasm -buildmode=c-shared ./wrangler/cmd/edgepixel-worker" || !slices.Contains(cmd.Env, "GOOS=wasip1") {
		t.Errorf("worker: %q", got)
	}
	if _, err := Edge.Command(ctx, "nope", "/repo", "/out/x"); err == nil {
		t.Error("an unknown toolchain was accepted")
	}
}

func TestNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range All {
		if seen[a.Name] || seen[a.File] {
			t.Errorf("%s: name or file used twice", a.Name)
		}
		seen[a.Name], seen[a.File] = true, true
		if b, ok := Named(a.Name); !ok || b != a {
			t.Errorf("Named(%q) = %v, %v", a.Name, b, ok)
		}
	}
	if _, ok := Named("nope"); ok {
		t.Error("Named found nope")
	}
}
