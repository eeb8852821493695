package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TinyGoTarget is the TinyGo target of the SDK's integration tests (its
// Makefile's test-integration-tinygo): wasip1, with "viceroy run -C
// fastly.toml {}" as the emulator that `tinygo test` runs each test
// binary with. Here viceroy is the POP.
const TinyGoTarget = "./targets/fastly-compute-wasip1.json"

// TinyGo is how Run reaches a TinyGo compiler.
type TinyGo struct {
	Bin  string   // the tinygo executable
	Vars []string // environment variables it needs (its root, its cache)
}

// tinyGoSuite runs each integration test package as the SDK's Makefile
// does with TinyGo — tinygo test -target=TinyGoTarget -tags=
// fastlyinternaldebug — up to parallel packages at once: each build is a
// whole-program compile of tens of seconds, mostly on one core, so two at
// once use a 2-core machine. `tinygo test -v` prints the test binary's
// output, which `go tool test2json` turns into the events the Go suites
// give; a package whose build or run fails without saying so in its
// output (a compile error, a crash) is a failure with tinygo's stderr.
func tinyGoSuite(ctx context.Context, sdk string, env []string, o Options, logPath string, done func(*Package)) (map[string]*Package, error) {
	pkgs, err := listPackages(ctx, sdk, env, "./integration_tests/...")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	tenv := env
	for _, kv := range append([]string{"GOOS=", "GOARCH="}, o.TinyGo.Vars...) {
		tenv = setEnv(tenv, kv)
	}
	var (
		mu  sync.Mutex
		out = map[string]*Package{}
		sem = make(chan struct{}, max(o.Parallel, 1))
		wg  sync.WaitGroup
	)
	for _, pkg := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			p, transcript := tinyGoTest(ctx, sdk, tenv, o, pkg)
			mu.Lock()
			defer mu.Unlock()
			log.Write(transcript)
			out[pkg] = p
			done(p)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return out, fmt.Errorf("stopped: %w (log: %s)", ctx.Err(), logPath)
	}
	return out, nil
}

// tinyGoTest tests one package and returns its outcome and a transcript
// for the log.
func tinyGoTest(ctx context.Context, sdk string, env []string, o Options, pkg string) (*Package, []byte) {
	rel := "./" + strings.TrimPrefix(pkg, SDKModule+"/")
	ctx, cancel := context.WithTimeout(ctx, o.TestTimeout)
	defer cancel()
	args := []string{"test", "-v", "-target=" + TinyGoTarget, "-tags=fastlyinternaldebug", rel}
	cmd := exec.Command(o.TinyGo.Bin, args...)
	cmd.Dir, cmd.Env = sdk, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Start()
	if err == nil {
		stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		err = cmd.Wait()
		stop()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the test left running
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("stopped after %s: %w", time.Since(began).Round(time.Second), ctx.Err())
	}
	var transcript bytes.Buffer
	fmt.Fprintf(&transcript, "$ tinygo %s  (%s)\n%s%s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond), stdout.Bytes(), stderr.Bytes())
	if err != nil {
		fmt.Fprintf(&transcript, "tinygo test: %v\n", err)
	}

	p := &Package{Path: pkg, Tests: map[string]*Test{}}
	conv := exec.CommandContext(ctx, "go", "tool", "test2json", "-p", pkg)
	conv.Dir, conv.Stdin = sdk, bytes.NewReader(stdout.Bytes())
	if events, cerr := conv.Output(); cerr != nil {
		p.Output = append(p.Output, "go tool test2json: "+cerr.Error())
	} else if parsed, perr := ParseJSON(bytes.NewReader(events), nil); perr == nil && parsed[pkg] != nil {
		p = parsed[pkg]
	}
	// The exit status has the last word: tinygo fails a package whose
	// build fails (nothing on stdout) or whose binary crashes.
	if err != nil || p.Result == "" {
		p.Result = "fail"
		p.Output = append(p.Output, strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")...)
		if err != nil {
			p.Output = append(p.Output, "tinygo test: "+err.Error())
		}
	}
	return p, transcript.Bytes()
}

// listPackages lists the packages matching pattern in the SDK.
func listPackages(ctx context.Context, sdk string, env []string, pattern string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-tags=fastlyinternaldebug", pattern)
	cmd.Dir, cmd.Env = sdk, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v\n%s", pattern, err, stderr.Bytes())
	}
	return strings.Fields(string(out)), nil
}

// setEnv returns env with key=value in place of key's entries; an empty
// value removes the key.
func setEnv(env []string, kv string) []string {
	key, value, _ := strings.Cut(kv, "=")
	out := env[:0:0]
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	if value != "" {
		out = append(out, kv)
	}
	return out
}
