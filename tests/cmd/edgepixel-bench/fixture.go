package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// sinkCounts are the events a countingSink received: in signed batches,
// and as NDJSON lines (any body that is not a batch).
type sinkCounts struct {
	batched, lines atomic.Int64
	posts          atomic.Int64 // deliveries of either kind
}

// countingSink serves as the aggregator for the POPs and edges under
// test: it answers every delivery 200 and counts what it received.
func countingSink() (addr string, c *sinkCounts, err error) {
	c = &sinkCounts{}
	addr, err = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.posts.Add(1)
		if n, err := wire.Count(b); err == nil {
			c.batched.Add(int64(n))
		} else {
			c.lines.Add(int64(strings.Count(string(b), "\n")))
		}
		w.WriteHeader(http.StatusOK)
	}))
	return addr, c, err
}

// benchManifest writes the secret and a fastly.toml named name into dir
// for a POP delivering to sink (the aggregator backend), with the config
// store's pop = "bench" and the lines in extraConfig, and loads it. path
// is the file's.
func benchManifest(dir, name, sink, extraConfig string) (m *fastlytoml.Manifest, path string, err error) {
	return benchManifestWith(dir, name, sink, extraConfig, nil)
}

// benchManifestWith is benchManifest with secrets added to the edgepixel
// secret store (each written to a file in dir).
func benchManifestWith(dir, name, sink, extraConfig string, secrets map[string]string) (m *fastlytoml.Manifest, path string, err error) {
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("bench-secret"), 0o600); err != nil {
		return nil, "", err
	}
	extraSecrets := ""
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		f := filepath.Join(dir, "secret-"+k)
		if err := os.WriteFile(f, []byte(secrets[k]), 0o600); err != nil {
			return nil, "", err
		}
		extraSecrets += fmt.Sprintf(", { key = %q, file = %q }", k, f)
	}
	path = filepath.Join(dir, name)
	err = os.WriteFile(path, []byte(fmt.Sprintf(`manifest_version = 3
name = "edgepixel-bench"
[local_server.backends.aggregator]
url = "http://%s"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "bench"
%s[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = %q }%s]
`, sink, extraConfig, secretFile, extraSecrets)), 0o644)
	if err != nil {
		return nil, "", err
	}
	m, err = fastlytoml.Load(path)
	return m, path, err
}

// benchWorkDir makes a temporary directory (remove deletes it) holding
// a manifest whose aggregator backend is sink, at manifestPath, and the
// POPs' compilation cache, cacheDir.
func benchWorkDir(sink string) (manifest *fastlytoml.Manifest, manifestPath, cacheDir string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "edgepixel-bench-")
	if err != nil {
		return nil, "", "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	manifest, manifestPath, err = benchManifest(dir, "fastly.toml", sink, "")
	if err != nil {
		remove()
		return nil, "", "", nil, err
	}
	return manifest, manifestPath, filepath.Join(dir, "cache"), remove, nil
}

// guestStderr is where the measured POPs' guests write their stderr:
// the bench's own, each distinct line once. Every fresh instance of a
// module run without a visitor salt (the pop section's, to match the
// native edge, which computes no visitor id) says so, and a
// hundred copies of it hid the figures.
var guestStderr io.Writer = &onceLines{w: os.Stderr, seen: map[string]bool{}}

// onceLines writes each line written to it to w the first time it is
// seen, and drops it after; a line is written whole or not at all.
type onceLines struct {
	mu      sync.Mutex
	w       io.Writer
	seen    map[string]bool
	partial []byte
}

func (o *onceLines) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(o.partial[:i+1])
		o.partial = o.partial[i+1:]
		if !o.seen[line] {
			o.seen[line] = true
			o.w.Write([]byte(line))
		}
	}
}
