// Package deps knows the programs that edgepixel's tests, `make run` and
// `make bench` run but Go does not build — Redis, ClickHouse, Chromium,
// the Fastly CLI, wrangler and workerd, wrk — how to find each and how
// to install it: Debian packages with apt-get (as root), npm packages
// into .edgepixel/npm.
//
// `make deps` installs (tests/cmd/edgepixel-deps); the end-to-end tests
// check and, when something is missing, say what and the command that
// installs it. The lists here are the only ones.
//
// The package imports little on purpose: `make run` compiles its command
// first, before any long build, and on an empty Go cache every import
// costs seconds.
package deps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/edgepixel/edgepixel/tests/progress"
)

// A Program is one outside program, and how to get it.
type Program struct {
	Name string // as messages say it
	// Bins are executables any of which will do, looked up on PATH and in
	// the sbin directories a non-root PATH often lacks.
	Bins []string
	// Env names an environment variable that, when set, is the
	// executable's path and wins.
	Env string
	// Files must exist besides the executable (a server's system config).
	Files []string
	// Apt are the Debian packages that install it; or else Npm is the npm
	// package@version installed into .edgepixel/npm, with NpmBin the
	// executable's path within that prefix.
	Apt         []string
	Npm, NpmBin string
	// Instead names an executable whose presence on PATH makes p
	// unneeded: an official TinyGo release needs none of the packages
	// TinyGo is built from source with.
	Instead string
}

// The programs.
var (
	Redis = Program{Name: "redis-server", Bins: []string{"redis-server"}, Apt: []string{"redis-server"}}
	// RedisCLI comes with redis-server (package redis-tools); it builds a
	// Redis Cluster (`redis-cli --cluster create`).
	RedisCLI         = Program{Name: "redis-cli", Bins: []string{"redis-cli"}, Apt: []string{"redis-tools"}}
	ClickHouse       = Program{Name: "clickhouse-server", Bins: []string{"clickhouse-server", "clickhouse"}, Files: []string{"/etc/clickhouse-server/config.xml", "/etc/clickhouse-server/users.xml"}, Apt: []string{"clickhouse-server", "clickhouse-client"}}
	ClickHouseClient = Program{Name: "clickhouse-client", Bins: []string{"clickhouse-client"}, Apt: []string{"clickhouse-client"}}
	Chromium         = Program{Name: "chromium", Bins: []string{"chromium", "chromium-browser"}, Env: "CHROMIUM", Apt: []string{"chromium"}}
	Npm              = Program{Name: "npm", Bins: []string{"npm"}, Apt: []string{"npm"}}
	// FastlyCLI is Fastly's own CLI; its `compute serve` runs the POP in
	// place of Viceroy. NpmBin is the npm shim, which runs the CLI binary
	// from the platform package beside it.
	FastlyCLI = Program{Name: "the Fastly CLI", Npm: "@fastly/cli@16.1.0", NpmBin: "node_modules/.bin/fastly"}
	// ZooKeeper is Debian's ZooKeeper (the jar, run by java's
	// QuorumPeerMain): replicated ClickHouse tables and distributed DDL
	// need it. The package starts no service. Path finds java.
	ZooKeeper = Program{Name: "zookeeper", Bins: []string{"java"}, Files: []string{"/usr/share/java/zookeeper.jar"}, Apt: []string{"zookeeper"}}
	Wrk       = Program{Name: "wrk", Bins: []string{"wrk"}, Apt: []string{"wrk"}}
	// Wrangler is Cloudflare's CLI (`wrangler deploy`); 4.86.0 is the
	// newest that runs on Node 20. Workerd, Cloudflare's Workers runtime,
	// comes with it; the tests and the bench run the worker on it
	// directly. Both install offline-capable: no account, no download at
	// run time.
	Wrangler = Program{Name: "wrangler", Npm: "wrangler@4.86.0", NpmBin: "node_modules/.bin/wrangler"}
	Workerd  = Program{Name: "workerd (from wrangler)", Npm: "wrangler@4.86.0", NpmBin: "node_modules/.bin/workerd"}
	// TinyGoLLVM is what package build needs to build TinyGo from the Go
	// module proxy (when no tinygo is installed): Debian's LLVM 19, clang
	// and wasm-ld, compiler-rt and wasi-libc for wasm32, wasm-opt, and a C
	// compiler for cgo. Files names one file of each package.
	TinyGoLLVM = Program{
		Name: "LLVM 19 and wasi-libc (to build TinyGo; or install a TinyGo release)",
		Bins: []string{"wasm-opt"},
		Files: []string{
			"/usr/lib/llvm-19/include/llvm-c/Core.h",   // llvm-19-dev
			"/usr/lib/llvm-19/include/clang-c/Index.h", // libclang-19-dev
			"/usr/lib/llvm-19/bin/clang",               // clang-19
			"/usr/lib/llvm-19/bin/wasm-ld",             // lld-19
			WasmCompilerRT,                             // libclang-rt-19-dev-wasm32
			WasiLibc,                                   // wasi-libc
			"/usr/bin/cc",                              // build-essential
		},
		Apt:     []string{"build-essential", "wasi-libc", "binaryen", "llvm-19-dev", "libclang-19-dev", "clang-19", "lld-19", "libclang-rt-19-dev-wasm32"},
		Instead: "tinygo",
	}
)

// Where Debian's packages put the wasm32 C libraries a TinyGo built from
// the module proxy lacks (its module has no wasi-libc sources): package
// build gives them to TinyGo ready-built.
const (
	WasiLibc        = "/usr/lib/wasm32-wasi/libc.a"
	WasiLibcInclude = "/usr/include/wasm32-wasi"
	WasmCompilerRT  = "/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a"
)

// What each make target needs. `make run` can do without Redis and
// ClickHouse (the aggregator falls back to embedded storage and dedupe),
// so it installs them when it can and only warns when it cannot; without
// TinyGoLLVM the build then says what to install.
var (
	Run   = []Program{TinyGoLLVM, Redis, ClickHouse, ClickHouseClient}
	Test  = []Program{TinyGoLLVM, Redis, ClickHouse, ClickHouseClient, ZooKeeper, Chromium, Npm, FastlyCLI, Wrangler, Workerd}
	Bench = []Program{TinyGoLLVM, Redis, ClickHouse, Wrk, Npm, Workerd}
	// Cluster is what `make cluster` runs: the fleet needs all of them.
	Cluster = []Program{TinyGoLLVM, Redis, ClickHouse, ZooKeeper}
	// Workers is what building and deploying the Cloudflare worker needs
	// (`make deps-workers`): TinyGo's LLVM and wrangler with its workerd.
	Workers = []Program{TinyGoLLVM, Npm, Wrangler, Workerd}
)

// NpmPrefix is where npm packages go: root/.edgepixel/npm.
func NpmPrefix(root string) string { return filepath.Join(root, ".edgepixel", "npm") }

// LogPath is the file installers write their output to:
// root/.edgepixel/logs/deps.log.
func LogPath(root string) string { return filepath.Join(root, ".edgepixel", "logs", "deps.log") }

// Path finds p's executable; root is the repository root (for npm
// packages).
func (p Program) Path(root string) (string, bool) {
	if p.Instead != "" {
		if path, err := exec.LookPath(p.Instead); err == nil {
			return path, true
		}
	}
	for _, f := range p.Files {
		if _, err := os.Stat(f); err != nil {
			return "", false
		}
	}
	if p.Env != "" {
		if v := os.Getenv(p.Env); v != "" {
			if path, err := exec.LookPath(v); err == nil {
				return path, true
			}
		}
	}
	if p.Npm != "" {
		path := filepath.Join(NpmPrefix(root), p.NpmBin)
		_, err := os.Stat(path)
		return path, err == nil
	}
	for _, n := range p.Bins {
		if path, err := exec.LookPath(n); err == nil {
			return path, true
		}
	}
	for _, n := range p.Bins {
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
			path := filepath.Join(d, n)
			if st, err := os.Stat(path); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return path, true
			}
		}
	}
	return "", false
}

// Missing returns the programs of ps that are not installed.
func Missing(root string, ps []Program) []Program {
	var out []Program
	for _, p := range ps {
		if _, ok := p.Path(root); !ok {
			out = append(out, p)
		}
	}
	return out
}

// Names joins the programs' names for a message.
func Names(ps []Program) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return strings.Join(s, ", ")
}

// Commands are the shell commands that install ps, run in the repository
// root: one apt-get (with sudo when not root) and one npm install.
func Commands(ps []Program) []string {
	apt, npm := split(ps)
	var cmds []string
	if len(apt) > 0 {
		sudo := "sudo "
		if os.Geteuid() == 0 {
			sudo = ""
		}
		cmds = append(cmds, sudo+"apt-get install -y "+strings.Join(apt, " "))
	}
	if len(npm) > 0 {
		cmds = append(cmds, "npm install --prefix .edgepixel/npm "+strings.Join(npm, " "))
	}
	return cmds
}

// Advice is the message for missing programs: what is missing and the
// commands that install it.
func Advice(missing []Program) string {
	return fmt.Sprintf("missing: %s\ninstall with: make deps   (that is: %s)",
		Names(missing), strings.Join(Commands(missing), " && "))
}

func split(ps []Program) (apt, npm []string) {
	seen := map[string]bool{}
	for _, p := range ps {
		for _, a := range p.Apt {
			if !seen[a] {
				seen[a] = true
				apt = append(apt, a)
			}
		}
		if p.Npm != "" && !seen[p.Npm] {
			seen[p.Npm] = true
			npm = append(npm, p.Npm)
		}
	}
	return apt, npm
}

// ErrNotRoot is returned by Install when Debian packages are missing and
// this process cannot install them.
var ErrNotRoot = errors.New("installing Debian packages needs root")

// Install installs whichever of ps are missing: Debian packages with
// apt-get when running as root (else ErrNotRoot, wrapped with the sudo
// command), then npm packages into .edgepixel/npm. The installers' output
// goes to LogPath(root); each step is reported to r with its elapsed time
// and the log's path.
func Install(ctx context.Context, root string, ps []Program, r *progress.Reporter) error {
	missing := Missing(root, ps)
	if len(missing) == 0 {
		return nil
	}
	apt, npm := split(missing)
	logPath := LogPath(root)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	if len(apt) > 0 {
		if os.Geteuid() != 0 {
			return fmt.Errorf("%w: run  sudo apt-get install -y %s", ErrNotRoot, strings.Join(apt, " "))
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			return fmt.Errorf("no apt-get on this system: install %s with its package manager", strings.Join(apt, ", "))
		}
		err := r.Run(fmt.Sprintf("installing %s with apt-get (log: %s)", strings.Join(apt, " "), logPath), func() error {
			install := append([]string{"install", "-y", "-q", "--no-install-recommends"}, apt...)
			if err := logged(ctx, logPath, "apt-get", install...); err == nil {
				return nil
			}
			// The package lists may be stale or absent (a fresh container).
			if err := logged(ctx, logPath, "apt-get", "update", "-q"); err != nil {
				return err
			}
			return logged(ctx, logPath, "apt-get", install...)
		})
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w (see %s)", strings.Join(apt, " "), err, logPath)
		}
	}
	if len(npm) > 0 {
		if _, ok := Npm.Path(root); !ok {
			return fmt.Errorf("npm is needed to install %s: sudo apt-get install -y npm", strings.Join(npm, " "))
		}
		err := r.Run(fmt.Sprintf("installing %s with npm into %s (log: %s)", strings.Join(npm, " "), NpmPrefix(root), logPath), func() error {
			return logged(ctx, logPath, "npm", append([]string{"install", "--no-audit", "--no-fund", "--prefix", NpmPrefix(root)}, npm...)...)
		})
		if err != nil {
			return fmt.Errorf("npm install %s: %w (see %s)", strings.Join(npm, " "), err, logPath)
		}
	}
	if still := Missing(root, ps); len(still) > 0 {
		return fmt.Errorf("still missing after the install: %s (see %s)", Names(still), logPath)
	}
	return nil
}

// logged runs a command with its output appended to the log at path.
func logged(ctx context.Context, path, name string, args ...string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.Run()
}
