package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestFastlyCLI takes the edge module through Fastly's own CLI, once per
// toolchain: `fastly compute build` in a copy of the checkout (fastly.toml's
// [scripts] build, with EDGEPIXEL_WASM_TOOLCHAIN naming the toolchain) must
// make a package holding fastly.toml with its [setup] and the module that
// toolchain builds; then `fastly compute serve`, with edgepixel's POP in
// place of Viceroy, serves that packaged module, and a pixel hit through
// it is stored by a real aggregator.
func TestFastlyCLI(t *testing.T) {
	cli := need(t, deps.FastlyCLI)
	s := startStack(t, stack.Options{NoPop: true})
	for _, tc := range build.Toolchains {
		t.Run(string(tc), func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			module := fastlyBuild(t, cli, tc)
			t.Logf("fastly compute build and the package checked in %v", time.Since(began).Round(time.Millisecond))
			began = time.Now()
			site := "cli-" + string(tc)
			fastlyServe(t, cli, module, s, site)
			t.Logf("fastly compute serve answered the pixel after %v", time.Since(began).Round(time.Millisecond))
			eventually(t, 30*time.Second, "the hit stored", func() (bool, string) {
				n := chQuery(t, s.ClickHouse.HTTPURL, fmt.Sprintf("SELECT count() FROM events WHERE site = '%s'", site))
				return n == "1", n
			})
		})
	}
}

// fastlyEnv keeps the Fastly CLI from checking for updates and from
// touching the user's configuration, and the go command (fastly.toml's
// build script runs it) on this machine's caches.
func fastlyEnv(t *testing.T) []string {
	return append([]string{"FASTLY_DISABLE_UPDATE_CHECK=1", "HOME=" + t.TempDir(), "XDG_CONFIG_HOME=" + t.TempDir()}, goCaches(t)...)
}

// fastlyBuild runs `fastly compute build` with toolchain tc in a copy of
// the checkout, checks the package it makes and returns its module.
func fastlyBuild(t *testing.T, cli string, tc build.Toolchain) []byte {
	work := copyCheckout(t, root)
	edge := filepath.Join(work, "edge")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out proc.Buffer
	p, err := proc.Start("fastly compute build", proc.Options{Dir: edge, Out: &out,
		Env: append(fastlyEnv(t), build.ToolchainEnv+"="+string(tc))},
		cli, "compute", "build", "--non-interactive")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.StopWith(syscall.SIGKILL, time.Second)
		t.Fatalf("fastly compute build did not finish:\n%s", out.String())
	}
	if p.Err() != nil {
		t.Fatalf("fastly compute build: %v\n%s", p.Err(), out.String())
	}
	files := untarGz(t, filepath.Join(edge, "pkg", "edgepixel.tar.gz"))
	module, manifest := files["edgepixel/bin/main.wasm"], files["edgepixel/fastly.toml"]
	if module == nil || manifest == nil {
		t.Fatalf("the package lacks bin/main.wasm or fastly.toml: it holds %v", keys(files))
	}
	if got, err := build.Identify(module); err != nil || got != tc {
		t.Errorf("the packaged module was built by %q (%v), want %s", got, err, tc)
	}
	if want, err := os.ReadFile(wasm[tc]); err != nil || !bytes.Equal(module, want) {
		t.Errorf("the packaged module (%d bytes) is not the %s build of these sources (%d bytes, %v)", len(module), tc, len(want), err)
	}
	var m struct {
		Setup struct {
			Backends     map[string]struct{ Port int }
			ConfigStores map[string]struct {
				Items map[string]struct{ Value string }
			} `toml:"config_stores"`
			SecretStores map[string]struct{ Entries map[string]struct{} } `toml:"secret_stores"`
			LogEndpoints map[string]struct{ Provider string }             `toml:"log_endpoints"`
		}
	}
	if _, err := toml.Decode(string(manifest), &m); err != nil {
		t.Fatalf("the packaged fastly.toml: %v", err)
	}
	if _, ok := m.Setup.Backends["aggregator"]; !ok {
		t.Error("[setup] has no backend aggregator")
	}
	if cs, ok := m.Setup.ConfigStores["edgepixel"]; !ok {
		t.Error("[setup] has no config store edgepixel")
	} else if _, ok := cs.Items["journal"]; ok {
		// Fastly's log endpoints do not queue on disk, and a journaled
		// event takes no other path.
		t.Error("[setup]'s config store sets journal, which is for edgepixel-pop only")
	}
	if _, ok := m.Setup.SecretStores["edgepixel"].Entries["aggregator_secret"]; !ok {
		t.Error("[setup] has no secret store edgepixel with aggregator_secret")
	}
	// The module's default fallback_log_endpoint (edge/cmd/edgepixel).
	if ep, ok := m.Setup.LogEndpoints["edgepixel_fallback"]; !ok || ep.Provider != "HTTPS" {
		t.Errorf("[setup] lacks the HTTPS log endpoint edgepixel_fallback: %+v", m.Setup.LogEndpoints)
	}
	return module
}

// fastlyServe serves module with `fastly compute serve`, the POP as its
// Viceroy, delivering to s's aggregator, and sends one pixel hit for site.
func fastlyServe(t *testing.T, cli string, module []byte, s *stack.Stack, site string) {
	proj := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proj, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(proj, "bin", "main.wasm"), module, 0o644)
	os.WriteFile(filepath.Join(proj, "secret"), s.Secret, 0o600)
	os.WriteFile(filepath.Join(proj, "fastly.toml"), []byte(fmt.Sprintf(`manifest_version = 3
name = "edgepixel-cli-test"
language = "go"
[local_server.backends.aggregator]
url = %q
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "cli"
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = "secret" }]
`, s.AggregatorURL)), 0o644)
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var out proc.Buffer
	p, err := proc.Start("fastly compute serve", proc.Options{Dir: proj, Out: &out,
		// The module compiled once, by TestMain.
		Env: append(fastlyEnv(t), "EDGEPIXEL_POP_COMPILE_CACHE="+compileCache)},
		cli, "compute", "serve", "--skip-build", "--non-interactive", "--viceroy-path="+bin.Pop, "--addr="+addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.StopWith(syscall.SIGINT, 30*time.Second)
		if t.Failed() {
			t.Logf("fastly compute serve output:\n%s", out.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/p.gif?site=%s&url=https%%3A%%2F%%2Fexample.com%%2F", addr, site)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.Equal(body, pixel.GIF) || resp.Header.Get("X-Edgepixel-Drop") != "" {
				t.Fatalf("pixel through fastly compute serve: %s %v %q", resp.Status, resp.Header, body)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fastly compute serve never answered on %s: %v", addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// untarGz reads a .tar.gz's regular files.
func untarGz(t *testing.T, path string) map[string][]byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
