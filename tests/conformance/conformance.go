// Package conformance runs compute-sdk-go's own test suites against the
// POP, as Fastly runs them against Viceroy (the SDK's Makefile):
//
//   - integration_tests: GOOS=wasip1 GOARCH=wasm go test
//     -exec "viceroy run -C fastly.toml", each test binary running once
//     under `edgepixel-pop run`;
//   - integration_tests with TinyGo (suite integration-tinygo): tinygo test
//     -target=targets/fastly-compute-wasip1.json, whose emulator is
//     "viceroy run -C fastly.toml {}", so again `edgepixel-pop run`;
//   - end_to_end_tests: go test -exec "serve.sh viceroy run -C fastly.toml",
//     where the SDK's serve.sh starts `fastly compute serve` (the official
//     Fastly CLI) with the POP as its Viceroy and the test binary sends
//     requests to it.
//
// "viceroy" is the POP: a directory put first on PATH holds a link named
// viceroy to edgepixel-pop, and FASTLY_VICEROY_USE_PATH=1 makes the Fastly
// CLI use the viceroy on PATH (the environment form of --viceroy-path).
// The SDK's source comes from the Go module cache, at the version go.mod
// requires, copied to a scratch directory; its tests and scripts run
// unchanged, except that the end-to-end tests' fixed port 23456 becomes a
// free one. Fastly's public test origins are replaced by a local stand-in
// (standin.go) that the POP reaches through --resolve.
package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/proc"
)

// SDKModule is the module whose tests judge the POP.
const SDKModule = "github.com/fastly/compute-sdk-go"

// Options configure Run.
type Options struct {
	Root        string        // the repository root (holds go.mod)
	Pop         string        // the edgepixel-pop binary
	FastlyCLI   string        // the Fastly CLI binary (end-to-end suite)
	Work        string        // scratch directory: SDK copy, logs
	Parallel    int           // go test -p for the integration suite
	TestTimeout time.Duration // go test -timeout, per test binary
	Suites      []string      // "integration", "e2e", "integration-tinygo"
	// TinyGo is the compiler of the integration-tinygo suite.
	TinyGo   *TinyGo
	Progress io.Writer
}

// Report is what a run found.
type Report struct {
	SDKVersion string
	Verdict    Verdict
	Logs       []string // full go test output, one file per suite
}

// Run runs the suites and judges them against Expected. The error is for
// a run that could not happen (no SDK, no go); test failures are in the
// report's verdict.
func Run(ctx context.Context, o Options) (*Report, error) {
	r := &Report{}
	progress := func(format string, args ...any) { fmt.Fprintf(o.Progress, format+"\n", args...) }
	began := time.Now()
	goEnv, err := goEnvironment(ctx, o.Root)
	if err != nil {
		return nil, err
	}
	sdkDir, version, err := locateSDK(ctx, o.Root)
	if err != nil {
		return nil, err
	}
	r.SDKVersion = version
	sdk := filepath.Join(o.Work, "compute-sdk-go")
	if err := copyTree(sdkDir, sdk); err != nil {
		return nil, fmt.Errorf("copying the SDK: %w", err)
	}
	progress("conformance: %s %s copied to %s", SDKModule, version, sdk)

	bin := filepath.Join(o.Work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	links := map[string]string{"viceroy": o.Pop}
	if o.FastlyCLI != "" {
		links["fastly"] = o.FastlyCLI
	}
	for name, target := range links {
		abs, err := filepath.Abs(target)
		if err != nil {
			return nil, err
		}
		os.Remove(filepath.Join(bin, name))
		if err := os.Symlink(abs, filepath.Join(bin, name)); err != nil {
			return nil, err
		}
	}

	standIn, err := StartStandIn()
	if err != nil {
		return nil, fmt.Errorf("stand-in origin: %w", err)
	}
	defer standIn.Close()
	caFile := filepath.Join(o.Work, "stand-in-ca.pem")
	if err := os.WriteFile(caFile, standIn.CAPEM, 0o644); err != nil {
		return nil, err
	}
	env := append(os.Environ(), goEnv...)
	env = append(env,
		"GOOS=wasip1", "GOARCH=wasm",
		"PATH="+bin+string(os.PathListSeparator)+filepath.Join(sdk, "end_to_end_tests")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EDGEPIXEL_POP_RESOLVE="+standIn.Resolve(),
		"SSL_CERT_FILE="+caFile, // the POP trusts the stand-in (and nothing else: there is no internet)
		"FASTLY_VICEROY_USE_PATH=1",
		"FASTLY_DISABLE_UPDATE_CHECK=1",
		"XDG_CONFIG_HOME="+filepath.Join(o.Work, "config"), // the Fastly CLI's config
	)
	progress("conformance: stand-in for %s on %s", strings.Join(StandInHosts, ", "), standIn.Addr)

	for _, suite := range o.Suites {
		logPath := filepath.Join(o.Work, suite+".log")
		done := func(p *Package) {
			rel := strings.TrimPrefix(p.Path, SDKModule+"/")
			passed, failed, expected := 0, 0, 0
			for name, t := range p.Tests {
				switch {
				case t.Result == "pass":
					passed++
				case t.Result == "fail" && isExpected(rel, name):
					expected++
				case t.Result == "fail":
					failed++
				}
			}
			result := p.Result
			if result == "fail" && failed == 0 && expected > 0 {
				result = "skip" // only tests Expected lists failed: judged below
			}
			progress("  %-4s %s  (%d passed, %d failed, %d expected to fail)  %s", result, rel,
				passed, failed, expected, time.Since(began).Round(time.Second))
		}
		var args []string
		var dir string
		switch suite {
		case "integration":
			dir = "integration_tests"
			args = []string{"-p", strconv.Itoa(max(o.Parallel, 1)), "-exec", "viceroy run -C fastly.toml"}
		case "e2e":
			dir = "end_to_end_tests"
			addr, err := proc.FreeAddr()
			if err != nil {
				return nil, err
			}
			if err := prepareE2E(ctx, filepath.Join(sdk, dir), addr, env, o, progress); err != nil {
				return nil, err
			}
			// Sequential: every package's server listens on addr.
			args = []string{"-p", "1", "-exec", "serve.sh viceroy --addr " + addr + " run -C fastly.toml"}
		case "integration-tinygo":
			if o.TinyGo == nil {
				return nil, fmt.Errorf("the %s suite needs TinyGo", suite)
			}
			r.Logs = append(r.Logs, logPath)
			progress("conformance: %s suite: tinygo test -target=%s, %d packages at once (log: %s)", suite, TinyGoTarget, max(o.Parallel, 1), logPath)
			pkgs, err := tinyGoSuite(ctx, sdk, env, o, logPath, done)
			if err != nil {
				return nil, fmt.Errorf("%s suite: %w", suite, err)
			}
			Judge(&r.Verdict, suite, SDKModule, "integration_tests", pkgs, Expected)
			continue
		default:
			return nil, fmt.Errorf("unknown suite %q (integration, e2e, integration-tinygo)", suite)
		}
		r.Logs = append(r.Logs, logPath)
		progress("conformance: %s suite: go test ./%s/... (log: %s)", suite, dir, logPath)
		pkgs, err := goTest(ctx, sdk, env, logPath, append(append([]string{"test", "-json", "-count=1",
			"-timeout", o.TestTimeout.String(), "-tags", "fastlyinternaldebug"}, args...), "./"+dir+"/..."), done)
		if err != nil {
			return nil, fmt.Errorf("%s suite: %w", suite, err)
		}
		Judge(&r.Verdict, suite, SDKModule, dir, pkgs, Expected)
	}
	return r, nil
}

// goEnvironment pins the go command's caches, so changing
// XDG_CONFIG_HOME for the Fastly CLI does not move them.
func goEnvironment(ctx context.Context, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, err
	}
	var env []string
	for k, v := range m {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env, nil
}

// locateSDK finds the SDK in the module cache at the version go.mod
// requires, downloading it through the module proxy if needed.
func locateSDK(ctx context.Context, root string) (dir, version string, err error) {
	var m struct{ Version, Dir string }
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-json", SDKModule)
	cmd.Dir = root
	out, err := cmd.Output()
	if err == nil {
		err = json.Unmarshal(out, &m)
	}
	if err != nil || m.Version == "" {
		return "", "", fmt.Errorf("go list -m %s (is it in go.mod?): %v", SDKModule, err)
	}
	if m.Dir == "" {
		cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", SDKModule+"@"+m.Version)
		cmd.Dir = root
		out, err := cmd.Output()
		if err == nil {
			err = json.Unmarshal(out, &m)
		}
		if err != nil || m.Dir == "" {
			return "", "", fmt.Errorf("go mod download %s@%s: %v", SDKModule, m.Version, err)
		}
	}
	return m.Dir, m.Version, nil
}

// copyTree copies the read-only module cache tree to dst, writable; shell
// scripts become executable (module zips keep no file modes).
func copyTree(src, dst string) error {
	os.RemoveAll(dst)
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(path, ".sh") {
			mode = 0o755
		}
		return os.WriteFile(target, data, mode)
	})
}

// prepareE2E points the end-to-end tests' "self" backend at addr (their
// fastly.toml files say 127.0.0.1:23456, serve.sh's default) and builds
// and compiles each package's module once ahead, with the package's own
// [scripts] build command line: serve.sh gives `fastly compute serve` 30
// seconds to listen, which a cold build plus a cold compile can exceed on
// a busy machine. The CLI's own build then finds Go's build cache warm,
// and the POP its compile cache.
func prepareE2E(ctx context.Context, dir, addr string, env []string, o Options, progress func(string, ...any)) error {
	manifests, err := filepath.Glob(filepath.Join(dir, "*", "fastly.toml"))
	if err != nil || len(manifests) == 0 {
		return fmt.Errorf("no end-to-end tests under %s", dir)
	}
	for _, m := range manifests {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		if err := os.WriteFile(m, []byte(strings.ReplaceAll(string(data), "127.0.0.1:23456", addr)), 0o644); err != nil {
			return err
		}
		pkg := filepath.Dir(m)
		began := time.Now()
		build := exec.CommandContext(ctx, "go", "build", "-tags", "fastlyinternaldebug", "-o", "bin/main.wasm", ".")
		build.Dir, build.Env = pkg, env
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
		// The POP's own default compile cache (or EDGEPIXEL_POP_COMPILE_CACHE):
		// the one it uses under the Fastly CLI, kept across runs.
		compile := exec.CommandContext(ctx, o.Pop, "--compile-only", "bin/main.wasm")
		compile.Dir, compile.Env = pkg, env
		if out, err := compile.CombinedOutput(); err != nil {
			return fmt.Errorf("compiling %s: %v\n%s", pkg, err, out)
		}
		progress("  built and compiled %s in %s", filepath.Base(pkg), time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// goTest runs go with args in dir, copying everything it prints to
// logPath and parsing its JSON events. Its process group is killed when
// ctx ends, servers started by serve.sh included.
func goTest(ctx context.Context, dir string, env []string, logPath string, args []string, done func(*Package)) (map[string]*Package, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	pkgs, perr := ParseJSON(io.TeeReader(bufio.NewReader(stdout), log), done)
	werr := cmd.Wait()
	// Whatever serve.sh left behind goes with the group.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() != nil {
		return pkgs, fmt.Errorf("stopped: %w (log: %s)", ctx.Err(), logPath)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return pkgs, werr
	}
	return pkgs, perr
}

// isExpected reports whether Expected lists test (or the test it is a
// subtest of) in package rel.
func isExpected(rel, test string) bool {
	for _, e := range Expected {
		if e.Package == rel && (test == e.Test || strings.HasPrefix(test, e.Test+"/")) {
			return true
		}
	}
	return false
}
