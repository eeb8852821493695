package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// fastlyCLI returns the path of the official Fastly CLI, installing it
// from npm into .edgepixel/npm on first use.
func fastlyCLI(t *testing.T) string {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := stack.FastlyCLI(root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestFastlyCLIServe runs the edge module the way a Fastly developer does
// locally — `fastly compute serve` — with edgepixel's POP in place of
// Viceroy, and fetches the pixel through it.
func TestFastlyCLIServe(t *testing.T) {
	cli := fastlyCLI(t)
	proj := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proj, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(bin.Wasm)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(proj, "bin", "main.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(proj, "secret"), []byte("cli-test"), 0o600)
	os.WriteFile(filepath.Join(proj, "fastly.toml"), []byte(`manifest_version = 3
name = "edgepixel-cli-test"
language = "go"
[local_server.backends.aggregator]
url = "http://127.0.0.1:9"
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = "secret" }]
`), 0o644)
	addr, err := stack.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(cli, "compute", "serve", "--skip-build", "--non-interactive",
		"--viceroy-path="+bin.Pop, "--addr="+addr)
	cmd.Dir = proj
	cmd.Env = append(os.Environ(), "FASTLY_DISABLE_UPDATE_CHECK=1", "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so the POP the CLI starts is stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("fastly compute serve output:\n%s", out.String())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/p.gif?site=cli", addr)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body := readAll(resp)
			if resp.StatusCode == 200 && resp.Header.Get("Content-Type") == "image/gif" && bytes.Equal(body, pixel.GIF) {
				return
			}
			t.Fatalf("pixel through fastly compute serve: %s %q", resp.Status, body)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fastly compute serve never answered on %s: %v", addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readAll(resp *http.Response) []byte {
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.Bytes()
}
