package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/edgepixel/edgepixel/tests/proc"
)

// Workerd is the Cloudflare worker (wrangler/) running in workerd,
// Cloudflare's open-source Workers runtime, started directly with a
// `workerd serve` config: no wrangler, no Miniflare proxy in between, no
// network beyond loopback.
type Workerd struct {
	Proc *proc.Proc
	URL  string // http://127.0.0.1:port
	Dir  string
}

// WorkerdOptions describe one workerd.
type WorkerdOptions struct {
	Bin  string // the workerd executable (deps.Workerd)
	Root string // the repository root: the worker's JavaScript is root/wrangler/src
	Wasm string // the built worker module (build.Worker)
	Dir  string // config, module copies and log go here
	Addr string // "" picks a free loopback port
	// Vars are the Worker's vars and secrets (wrangler/worker's keys).
	Vars map[string]string
	// KV binds Workers KV namespaces: binding name to the loopback
	// address of an HTTP server that answers workerd's KV reads (GET
	// /KEY, percent-encoded: the value, or 404 for none).
	KV map[string]string
	// Spool, when set, is the directory the spool's Durable Objects
	// (wrangler/src/spool.js, bound as SPOOL as wrangler.toml binds it)
	// keep their storage in; it outlives a restart of workerd on it.
	Spool string
	// Log receives workerd's output; "" is Dir/workerd.log.
	Log string
}

// CFHeader is the request header whose JSON this workerd serves as
// request.cf (workerd's cfBlobHeader), so tests can say what Cloudflare
// would have said about a visitor. Production Cloudflare sets request.cf
// itself.
const CFHeader = "x-test-cf"

// StartWorkerd writes the config and starts workerd, and waits until the
// worker answers /healthz (which, being the first fetch, also starts the
// Go module).
func StartWorkerd(ctx context.Context, o WorkerdOptions) (*Workerd, error) {
	if o.Addr == "" {
		var err error
		if o.Addr, err = proc.FreeAddr(); err != nil {
			return nil, err
		}
	}
	if o.Log == "" {
		o.Log = filepath.Join(o.Dir, "workerd.log")
	}
	// The modules keep the names they have under wrangler/, so that
	// src/index.js's import of ../build/edgepixel.wasm resolves as it does
	// for wrangler.
	files := map[string]string{"build/edgepixel.wasm": o.Wasm}
	srcs, err := filepath.Glob(filepath.Join(o.Root, "wrangler", "src", "*.js"))
	if err != nil || len(srcs) == 0 {
		return nil, fmt.Errorf("no worker JavaScript in %s/wrangler/src", o.Root)
	}
	for _, s := range srcs {
		files["src/"+filepath.Base(s)] = s
	}
	var names []string
	for name, from := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			return nil, err
		}
		to := filepath.Join(o.Dir, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	// workerd takes the first module as the main one: wrangler.toml's main.
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "src/index.js") != (names[j] == "src/index.js") {
			return names[i] == "src/index.js"
		}
		return names[i] < names[j]
	})
	date, err := compatibilityDate(filepath.Join(o.Root, "wrangler", "wrangler.toml"))
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(o.Dir, "workerd.capnp")
	if err := os.WriteFile(cfg, []byte(workerdConfig(o.Addr, date, names, o.Vars, o.KV, o.Spool)), 0o644); err != nil {
		return nil, err
	}
	w := &Workerd{URL: "http://" + o.Addr, Dir: o.Dir}
	// --verbose: workerd logs what it cancels (a request it finds hung,
	// a promise resolved across requests) only then.
	w.Proc, err = proc.Start("workerd", proc.Options{Dir: o.Dir, Log: o.Log}, o.Bin, "serve", "--verbose", cfg)
	if err != nil {
		return nil, err
	}
	if err := w.Proc.WaitReady(ctx, proc.HTTPOK(w.URL+"/healthz")); err != nil {
		w.Proc.Kill()
		return nil, err
	}
	return w, nil
}

// workerdConfig is a `workerd serve` config: the worker on addr, its
// outbound fetches allowed to loopback (the aggregator), request.cf
// from CFHeader, KV namespaces served by the servers in kv, and the
// spool's Durable Objects kept on disk in spool (none if "").
func workerdConfig(addr, date string, modules []string, vars, kv map[string]string, spool string) string {
	var b strings.Builder
	b.WriteString(`using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])),
`)
	for _, k := range sortedKeys(kv) {
		fmt.Fprintf(&b, "    (name = %q, external = (address = %q, http = ())),\n", "kv-"+k, kv[k])
	}
	if spool != "" {
		fmt.Fprintf(&b, "    (name = \"spool-disk\", disk = (path = %q, writable = true)),\n", spool)
	}
	b.WriteString(`  ],
  sockets = [(name = "http", address = ` + strconv.Quote(addr) + `, http = (cfBlobHeader = "` + CFHeader + `"), service = "main")],
);
const worker :Workerd.Worker = (
  compatibilityDate = ` + strconv.Quote(date) + `,
  modules = [
`)
	for _, m := range modules {
		kind := "esModule"
		if strings.HasSuffix(m, ".wasm") {
			kind = "wasm"
		}
		fmt.Fprintf(&b, "    (name = %q, %s = embed %q),\n", m, kind, m)
	}
	b.WriteString("  ],\n  bindings = [\n")
	for _, k := range sortedKeys(vars) {
		fmt.Fprintf(&b, "    (name = %q, text = %q),\n", k, vars[k])
	}
	for _, k := range sortedKeys(kv) {
		fmt.Fprintf(&b, "    (name = %q, kvNamespace = %q),\n", k, "kv-"+k)
	}
	if spool != "" {
		b.WriteString("    (name = \"SPOOL\", durableObjectNamespace = \"Spool\"),\n")
	}
	b.WriteString("  ],\n")
	if spool != "" {
		// SQLite-backed, as wrangler.toml's migration declares it.
		b.WriteString("  durableObjectNamespaces = [(className = \"Spool\", uniqueKey = \"edgepixel-spool\", enableSql = true)],\n")
		b.WriteString("  durableObjectStorage = (localDisk = \"spool-disk\"),\n")
	}
	b.WriteString(");\n")
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compatibilityDate reads compatibility_date from wrangler.toml, so that
// workerd runs the worker as Cloudflare will.
func compatibilityDate(path string) (string, error) {
	var m struct {
		Date string `toml:"compatibility_date"`
	}
	if _, err := toml.DecodeFile(path, &m); err != nil {
		return "", err
	}
	if m.Date == "" {
		return "", fmt.Errorf("%s: no compatibility_date", path)
	}
	return m.Date, nil
}

// Stop ends workerd.
func (w *Workerd) Stop() error {
	if w == nil || w.Proc == nil {
		return nil
	}
	w.Proc.Kill()
	return nil
}
