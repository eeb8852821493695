package build

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/progress"
)

// The edge module takes a TinyGo build a minute or two, so each module
// built is kept under WasmCache(root), keyed by everything it is built
// from: the compiler's version and flags, go.mod and go.sum (which fix
// every outside module), and every file of each of the repository's
// packages it imports. `make build`, the tests, `make conformance` and
// fastly.toml's build script then build it once for the same sources.

// WasmCache is the directory of built modules: root/.edgepixel/cache/wasm.
func WasmCache(root string) string { return filepath.Join(root, ".edgepixel", "cache", "wasm") }

// wasmCacheKeep is how many modules of each toolchain the cache keeps, the
// most recently used.
const wasmCacheKeep = 6

// buildCached writes a, built by c, to out: from the cache if it holds
// this build, else built into the cache first. A lock per key makes a
// concurrent build of the same sources wait for the first.
func (a Artifact) buildCached(ctx context.Context, c *Compiler, root, out string, r *progress.Reporter) error {
	key, err := SourceKey(ctx, c, root, a.Pkg)
	if err != nil {
		return err
	}
	dir := WasmCache(root)
	name := fmt.Sprintf("%s-%s", c.Toolchain, key)
	if a.Reactor { // same sources, another build mode (compilerArgs)
		sum := sha256.Sum256([]byte(strings.Join(a.compilerArgs(c, "OUT"), "\x00")))
		name = fmt.Sprintf("%s-%s-%s-%x", c.Toolchain, a.Name, key, sum[:3])
	}
	cached := filepath.Join(dir, name+".wasm")
	if _, err := os.Stat(cached); err != nil {
		l, err := acquire(ctx, filepath.Join(dir, name+".lock"), a.Describe(c.Toolchain), r)
		if err != nil {
			return err
		}
		defer l.release()
	}
	if _, err := os.Stat(cached); err == nil {
		now := time.Now()
		os.Chtimes(cached, now, now) // most recently used
		r.Printf("%s (%s): sources unchanged since its last build, taken from %s", a.About, c.Toolchain, cached)
		return copyAtomic(cached, out)
	}
	tmp := filepath.Join(dir, name+".tmp.wasm")
	if err := a.run(ctx, c, root, tmp, r); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, cached); err != nil {
		return err
	}
	pruneWasmCache(dir, c.Toolchain)
	return copyAtomic(cached, out)
}

// SourceKey is the cache key of the main package pkg built by c: a hash of
// c's toolchain, version and flags, GOFLAGS, go.mod, go.sum and the files
// of every package of the main module that pkg imports for wasip1 (all of
// each package's files but tests, whatever their build tags; TinyGo's
// imports are listed with the tinygo tag).
func SourceKey(ctx context.Context, c *Compiler, root, pkg string) (string, error) {
	args := []string{"list", "-deps", "-f", "{{if and .Module .Module.Main}}{{.Dir}}{{range .EmbedFiles}}\t{{.}}{{end}}{{end}}"}
	if c.Toolchain == TinyGo {
		args = append(args, "-tags=tinygo")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = withEnv(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%q\nGOFLAGS=%s\n", c.Toolchain, c.Version, c.Args(pkg, "OUT"), os.Getenv("GOFLAGS"))
	files := []string{"go.mod", "go.sum"}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if fields[0] == "" {
			continue
		}
		dir, err := filepath.Rel(root, fields[0])
		if err != nil {
			return "", err
		}
		entries, err := os.ReadDir(fields[0])
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), "_test.go") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
		for _, f := range fields[1:] {
			files = append(files, filepath.Join(dir, f))
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) && (f == "go.mod" || f == "go.sum") {
			fmt.Fprintf(h, "%s absent\n", f)
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// pruneWasmCache keeps the wasmCacheKeep most recently used modules of tc.
func pruneWasmCache(dir string, tc Toolchain) {
	files, _ := filepath.Glob(filepath.Join(dir, string(tc)+"-*.wasm"))
	type entry struct {
		path string
		used time.Time
	}
	var es []entry
	for _, f := range files {
		if strings.HasSuffix(f, ".tmp.wasm") {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			es = append(es, entry{f, st.ModTime()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].used.After(es[j].used) })
	for i := wasmCacheKeep; i < len(es); i++ {
		os.Remove(es[i].path)
		os.Remove(strings.TrimSuffix(es[i].path, ".wasm") + ".lock")
	}
}

// copyAtomic copies src to dst through a temporary file renamed into
// place: a POP watching dst for changes never reads half a module.
func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
