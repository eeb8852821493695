package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/progress"
)

// Options describe a stack. Everything it writes lives under Dir, so
// starting again with the same Dir keeps the data.
type Options struct {
	Dir string
	Bin Binaries

	AggregatorAddr string // "" or port 0 picks a free loopback port
	DashboardAddr  string // the aggregator's private listener; "" or port 0 picks a free loopback port
	PopAddr        string // "" or port 0 picks a free loopback port

	// NoRedis and NoClickHouse run the aggregator on its embedded fallbacks
	// (in-process dedupe, on-disk storage) instead of the real servers.
	NoRedis, NoClickHouse bool
	// RedisCluster runs dedupe on a Redis Cluster (3 masters with a
	// replica each, localsrv.StartRedisCluster) instead of one Redis.
	RedisCluster bool
	// Aggregators is how many aggregators run (0 means 1), sharing Redis
	// and ClickHouse, each with its own data directory and ports. The POP
	// knows them all as backends aggregator, aggregator2, ... and the edge
	// module's backend key lists them (unless EdgeConfig sets it). The
	// POP's log endpoints deliver to the first, failing over to the others.
	Aggregators int
	// PeerAggregators are URLs of aggregators outside this stack (another
	// stack's, sharing its Redis, ClickHouse, Dir/secret and log token)
	// that the POP knows too, as backends peer1, peer2, ..., listed in the
	// edge module's backend key after the stack's own (unless EdgeConfig
	// sets it), and as the log endpoints' failover collectors.
	PeerAggregators []string
	// NoPop starts no POP: tests that post signed batches to the
	// aggregator themselves need none.
	NoPop bool
	// NoAggregator starts no aggregator: the POP delivers to one run
	// elsewhere at AggregatorAddr (which must then be given), sharing
	// Dir/secret and the --log-token in AggregatorArgs, and to
	// PeerAggregators after it. Stop leaves it running.
	NoAggregator bool
	// AggregatorArgs and PopArgs are added to those command lines.
	AggregatorArgs []string
	PopArgs        []string

	// EdgeConfig adds keys to the edge module's "edgepixel" config store,
	// e.g. batch_max_age_ms.
	EdgeConfig map[string]string
	// EdgeSecrets adds entries to the edge module's "edgepixel" secret
	// store, each read from a file Dir/secrets/NAME written at start
	// (visitor_salt_0, pixel_key.SITE, ...): rewrite the file and SIGHUP
	// the POP to rotate one. Every other file already in Dir/secrets is
	// an entry too (see secretNames).
	EdgeSecrets map[string]string

	// Delivery is how the edge module on the POP delivers (see
	// Stack.popEndpoints): DeliveryJournal (the default) or
	// DeliveryBatches (Fastly's way). Either way a fallback log endpoint
	// queued on disk takes what batches cannot deliver.
	Delivery string
	// Durability of the POP's log queues: "write" (the default: a hit
	// the POP answered survives its kill -9) or "fsync" (also a machine
	// crash).
	Durability string
	// JournalQuery sets options of the journal endpoint's URL query,
	// e.g. "max_bytes=10" (logsink.ParseEndpoint), over the stack's.
	JournalQuery string
	// FallbackQuery does the same for the fallback endpoint.
	FallbackQuery string

	// CompileCache is the POP's compiled-code cache: "" is Dir/wazero-cache,
	// "default" the POP's own default (the user's cache directory, shared
	// with `fastly compute serve` running the POP on the same module).
	CompileCache string

	// Logs receives every child's output; nil writes Dir/logs/NAME.log.
	Logs io.Writer
	// Progress, if set, reports each start with its elapsed time.
	Progress *progress.Reporter
}

// Deliveries (Options.Delivery).
const (
	// DeliveryJournal: the module writes each hit's line to the log
	// endpoint JournalEndpoint before it answers; the POP queues it on
	// disk and streams it to the aggregator's /ingest/ndjson. Signed
	// batches and the fallback endpoint take what the journal refuses.
	DeliveryJournal = "journal"
	// DeliveryBatches: signed batches to the aggregator, the fallback
	// endpoint when they fail, as on Fastly.
	DeliveryBatches = "batches"
)

// Log endpoints the stack's POP has, both queued on disk under
// Dir/pop-queue and delivering to the aggregator's /ingest/ndjson.
const (
	JournalEndpoint  = storekeys.JournalLogEndpoint
	FallbackEndpoint = storekeys.DefaultFallbackLogEndpoint
)

// Stack is a running set of processes.
type Stack struct {
	opts     Options
	Secret   []byte
	LogToken string // the aggregator's log token, which the POP's endpoints send
	// logTokenFile is the file holding LogToken when the stack made it,
	// which the aggregators (EDGEPIXEL_AGG_LOG_TOKEN_FILE) and the POP's
	// endpoints (bearer_file) read: not the command line, which every
	// local user can read (ps), nor the environment. "" when
	// AggregatorArgs gave --log-token.
	logTokenFile string
	Redis        *localsrv.Redis
	RedisCluster *localsrv.RedisCluster
	ClickHouse   *localsrv.ClickHouse
	Aggregator   *proc.Proc
	Pop          *proc.Proc
	// More are the aggregators after the first (Options.Aggregators).
	More []*Member

	AggregatorURL string // http://host:port: the public listener (ingest)
	// DashboardURL is the private listener (dashboard, /api/, /live,
	// /metrics); DashboardToken its admin token.
	DashboardURL   string
	DashboardToken string
	PopURL         string
	Manifest       string // the fastly.toml the POP reads
}

// Member is one more aggregator of the stack.
type Member struct {
	N        int    // 2, 3, ...: its backend is "aggregator" + N
	URL      string // its public listener
	DashURL  string // its private listener (token: the stack's DashboardToken)
	DataDir  string // its spool
	Proc     *proc.Proc
	addr     string
	dashAddr string
}

// linkLog links a server's log (a file in its own directory under dir)
// into dir's logs directory by the file's name, so that the one
// directory holds every process's log, as make run's banner says (a
// tester looked there for ClickHouse's; a Redis Cluster, which make run
// does not start, keeps its nodes' logs in their own directories). The
// link is relative, so dir may move; one that points elsewhere is
// replaced.
func linkLog(dir, log string) {
	rel, err := filepath.Rel(filepath.Join(dir, "logs"), log)
	if err != nil {
		return
	}
	link := filepath.Join(dir, "logs", filepath.Base(log))
	if was, err := os.Readlink(link); err == nil && was != rel {
		os.Remove(link)
	}
	os.Symlink(rel, link)
}

// Start brings the stack up in dependency order and waits until each part
// answers. On error it stops whatever it had started.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	s := &Stack{opts: o}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if s.Secret, err = EnsureSecret(filepath.Join(o.Dir, "secret")); err != nil {
		return nil, err
	}
	s.LogToken = flagValue(o.AggregatorArgs, "log-token")
	if s.LogToken == "" {
		s.logTokenFile = filepath.Join(o.Dir, "log-token")
		tok, err := EnsureSecret(s.logTokenFile)
		if err != nil {
			return nil, err
		}
		s.LogToken = string(tok)
	}
	switch s.opts.Delivery {
	case "":
		s.opts.Delivery = DeliveryJournal
	case DeliveryJournal, DeliveryBatches:
	default:
		return nil, fmt.Errorf("stack: unknown delivery %q", s.opts.Delivery)
	}
	if s.opts.Durability == "" {
		s.opts.Durability = "write"
	}
	if !o.NoPop {
		// Said before the servers start, not as the POP's failure.
		if _, err := s.secretNames(); err != nil {
			return nil, err
		}
	}
	if !o.NoRedis && o.RedisCluster {
		if err := o.Progress.Run("starting a Redis Cluster (3 masters, 3 replicas)", func() (err error) {
			s.RedisCluster, err = localsrv.StartRedisCluster(ctx, filepath.Join(o.Dir, "redis-cluster"), 3, 1)
			return err
		}); err != nil {
			return nil, err
		}
	} else if !o.NoRedis {
		dir := filepath.Join(o.Dir, "redis")
		linkLog(o.Dir, localsrv.RedisLog(dir))
		if err := o.Progress.Run("starting redis-server", func() (err error) {
			s.Redis, err = localsrv.StartRedis(ctx, dir, 0)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if !o.NoClickHouse {
		dir := filepath.Join(o.Dir, "clickhouse")
		linkLog(o.Dir, localsrv.ClickHouseLog(dir))
		linkLog(o.Dir, localsrv.ClickHouseErrLog(dir))
		if err := o.Progress.Run("starting clickhouse-server", func() (err error) {
			s.ClickHouse, err = localsrv.StartClickHouse(ctx, dir, 0, 0)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if s.opts.AggregatorAddr, err = pickAddr(s.opts.AggregatorAddr); err != nil {
		return nil, err
	}
	s.AggregatorURL = "http://" + s.opts.AggregatorAddr
	dashAddr, err := pickAddr(o.DashboardAddr)
	if err != nil {
		return nil, err
	}
	s.DashboardURL = "http://" + dashAddr
	tok, err := EnsureSecret(filepath.Join(o.Dir, "dashboard-token"))
	if err != nil {
		return nil, err
	}
	s.DashboardToken = string(tok)
	if o.NoAggregator {
		if o.AggregatorAddr == "" || strings.HasSuffix(o.AggregatorAddr, ":0") {
			return nil, errors.New("stack: NoAggregator needs the AggregatorAddr of the aggregator run elsewhere")
		}
	} else if err := s.StartAggregator(ctx); err != nil {
		return nil, err
	}
	for n := 2; n <= o.Aggregators; n++ {
		m := &Member{N: n, DataDir: filepath.Join(o.Dir, "aggregator"+strconv.Itoa(n))}
		if m.addr, err = pickAddr(""); err != nil {
			return nil, err
		}
		if m.dashAddr, err = pickAddr(""); err != nil {
			return nil, err
		}
		m.URL = "http://" + m.addr
		m.DashURL = "http://" + m.dashAddr
		s.More = append(s.More, m)
		if err := s.StartMember(ctx, m); err != nil {
			return nil, err
		}
	}
	if o.NoPop {
		return s, nil
	}
	if s.opts.PopAddr, err = pickAddr(s.opts.PopAddr); err != nil {
		return nil, err
	}
	s.PopURL = "http://" + s.opts.PopAddr
	if err := s.writeEdgeSecrets(); err != nil {
		return nil, err
	}
	s.Manifest = filepath.Join(o.Dir, "fastly.toml")
	if err := s.WriteManifest(); err != nil {
		return nil, err
	}
	if err := s.StartPop(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteManifest writes the POP's fastly.toml (Stack.Manifest), its
// secret store naming every file now in Dir/secrets (secretNames). Call
// it again, before a SIGHUP, when a file there appears or goes: the POP
// reads the files the manifest names, and a salt written after the start
// (visitor_salt_1 on a stack started in the first half hour after
// midnight UTC) was never read until a restart (a tester's).
func (s *Stack) WriteManifest() error {
	secrets, err := s.secretNames()
	if err != nil {
		return err
	}
	// Whole or not at all: the POP watches the file, and a half-written
	// one would be refused (and said) before the rest came.
	tmp := s.Manifest + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.manifest(secrets)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.Manifest)
}

// StartPop starts (or, after Kill, restarts) the POP with the stack's
// settings and waits until its module answers /healthz. A restarted POP
// resumes the log queues its predecessor left on disk.
func (s *Stack) StartPop(ctx context.Context) error {
	o := s.opts
	popArgs := []string{"-C", s.Manifest, "--addr", o.PopAddr}
	cache := "" // the POP's own default when "default"
	switch o.CompileCache {
	case "":
		cache = filepath.Join(o.Dir, "wazero-cache")
	case "default":
	default:
		cache = o.CompileCache
	}
	if cache != "" {
		popArgs = append(popArgs, "--compile-cache", cache)
	}
	popArgs = append(popArgs, "--log-queue-dir", filepath.Join(s.opts.Dir, "pop-queue"))
	popArgs = append(append(popArgs, o.PopArgs...), o.Bin.Wasm)
	out := s.output("pop")
	// The endpoints carry the log token: through the environment, not
	// the command line, which every local user can read (ps). A
	// --log-endpoint in PopArgs still replaces the entry of its name.
	out.Env = []string{"EDGEPIXEL_POP_LOG_ENDPOINTS=" + strings.Join(s.popEndpoints(), ",")}
	// The first start of a module compiles it, which takes long on a slow
	// machine; later starts read the compile cache. There is no deadline
	// of our own here: ctx bounds the whole start.
	what := "starting the local POP"
	if entries, err := os.ReadDir(cache); cache != "" && (err != nil || len(entries) == 0) {
		what += " (a first start compiles the edge module)"
	}
	return o.Progress.Run(what, func() (err error) {
		if s.Pop, err = proc.Start("edgepixel-pop", out, o.Bin.Pop, popArgs...); err != nil {
			return err
		}
		// The module's own /healthz proves a guest instance runs, not just
		// the host.
		return s.Pop.WaitReady(ctx, proc.HTTPOK(s.PopURL+"/healthz"))
	})
}

// popEndpoints are the POP's log endpoints (NAME=URL, as
// --log-endpoint takes them): the journal and the fallback, queued on
// disk in Dir/pop-queue at the
// stack's durability, delivering to the aggregator's /ingest/ndjson with
// its log token, and failing over to the other aggregators' (More, then
// PeerAggregators, which take the same log token). A line waits at most 250 ms for its batch, so live
// counts follow the hits closely; a batch stays within the aggregator's
// default body limit.
func (s *Stack) popEndpoints() []string {
	var out []string
	failover := ""
	for _, u := range s.otherAggregators() {
		failover += "&failover=" + url.QueryEscape(u+"/ingest/ndjson")
	}
	auth := "&header=Authorization:Bearer%20" + url.QueryEscape(s.LogToken)
	if s.logTokenFile != "" {
		auth = "&bearer_file=" + url.QueryEscape(s.logTokenFile)
	}
	for _, name := range []string{JournalEndpoint, FallbackEndpoint} {
		extra := "" // first: a repeated option takes its first value
		if q := map[string]string{JournalEndpoint: s.opts.JournalQuery, FallbackEndpoint: s.opts.FallbackQuery}[name]; q != "" {
			extra = q + "&"
		}
		out = append(out, name+"="+s.AggregatorURL+"/ingest/ndjson?"+extra+"period=250ms&max_bytes=1048576&durability="+s.opts.Durability+
			auth+failover)
	}
	return out
}

// otherAggregators are the URLs of the aggregators after the first: the
// stack's own, then its peers.
func (s *Stack) otherAggregators() []string {
	var out []string
	for _, m := range s.More {
		out = append(out, m.URL)
	}
	return append(out, s.opts.PeerAggregators...)
}

// flagValue returns the value of --name (or -name) in args, "" if absent.
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if k, val, ok := strings.Cut(a, "="); ok && k == name {
			v = val
		} else if a == name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// Options returns the stack's options, defaults filled in.
func (s *Stack) Options() Options { return s.opts }

// pickAddr returns addr, or a free loopback address for "" or port 0:
// the stack's URLs must name the real port.
func pickAddr(addr string) (string, error) {
	if addr == "" || strings.HasSuffix(addr, ":0") {
		return proc.FreeAddr()
	}
	return addr, nil
}

// StartAggregator starts (or, after Kill, restarts) the aggregator with the
// stack's settings and waits for /healthz.
func (s *Stack) StartAggregator(ctx context.Context) (err error) {
	s.Aggregator, err = s.startAggregator(ctx, "aggregator", s.opts.AggregatorAddr, strings.TrimPrefix(s.DashboardURL, "http://"), filepath.Join(s.opts.Dir, "aggregator"))
	return err
}

// StartMember starts (or, after its Proc was killed, restarts) one more
// aggregator.
func (s *Stack) StartMember(ctx context.Context, m *Member) (err error) {
	m.Proc, err = s.startAggregator(ctx, "aggregator"+strconv.Itoa(m.N), m.addr, m.dashAddr, m.DataDir)
	return err
}

func (s *Stack) startAggregator(ctx context.Context, name, addr, dashAddr, dataDir string) (*proc.Proc, error) {
	o := s.opts
	args := []string{
		"--addr", addr,
		"--data-dir", dataDir,
		"--secret-file", filepath.Join(o.Dir, "secret"),
		"--dashboard-addr", dashAddr,
		"--dashboard-token-file", filepath.Join(o.Dir, "dashboard-token"),
	}
	if s.Redis != nil {
		args = append(args, "--redis", s.Redis.URL)
	}
	if s.RedisCluster != nil {
		args = append(args, "--redis-cluster", strings.Join(s.RedisCluster.Addrs(), ","))
	}
	if s.ClickHouse != nil {
		args = append(args, "--clickhouse", s.ClickHouse.HTTPURL)
	}
	args = append(args, o.AggregatorArgs...)
	var p *proc.Proc
	err := o.Progress.Run("starting the "+name, func() (err error) {
		out := s.output(name)
		if s.logTokenFile != "" {
			out.Env = []string{"EDGEPIXEL_AGG_LOG_TOKEN_FILE=" + s.logTokenFile}
		}
		if p, err = proc.Start("edgepixel-"+name, out, o.Bin.Aggregator, args...); err != nil {
			return err
		}
		// It migrates the schema before it listens: on a cluster that is
		// distributed DDL on every server in turn, which it allows 3
		// minutes; step 7 adds 27 statements (tables, views, drops).
		ready := time.Minute
		if slices.Contains(o.AggregatorArgs, "--clickhouse-cluster") {
			ready = 8 * time.Minute
		}
		ctx, cancel := context.WithTimeout(ctx, ready)
		defer cancel()
		return p.WaitReady(ctx, proc.HTTPOK("http://"+addr+"/healthz"))
	})
	return p, err
}

// DashboardGet GETs path (with its query) on the private listener with
// the admin token.
func (s *Stack) DashboardGet(path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", s.DashboardURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.DashboardToken)
	return http.DefaultClient.Do(req)
}

// output is where the child name writes: Options.Logs, or its log file.
func (s *Stack) output(name string) proc.Options {
	if s.opts.Logs != nil {
		return proc.Options{Out: s.opts.Logs}
	}
	return proc.Options{Log: filepath.Join(s.opts.Dir, "logs", name+".log")}
}

// manifest is the fastly.toml for the POP: the aggregator backend, the
// shared secret and the edge's config store.
func (s *Stack) manifest(secrets []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "manifest_version = 3\nname = \"edgepixel\"\nlanguage = \"go\"\n\n")
	fmt.Fprintf(&b, "[local_server.backends.aggregator]\nurl = %q\n\n", s.AggregatorURL)
	cfg := map[string]string{storekeys.Pop: "local"}
	if len(s.More) > 0 || len(s.opts.PeerAggregators) > 0 {
		names := []string{"aggregator"}
		for _, m := range s.More {
			name := "aggregator" + strconv.Itoa(m.N)
			fmt.Fprintf(&b, "[local_server.backends.%s]\nurl = %q\n\n", name, m.URL)
			names = append(names, name)
		}
		for i, u := range s.opts.PeerAggregators {
			name := "peer" + strconv.Itoa(i+1)
			fmt.Fprintf(&b, "[local_server.backends.%s]\nurl = %q\n\n", name, u)
			names = append(names, name)
		}
		cfg[storekeys.Backend] = strings.Join(names, ",")
	}
	if s.opts.Delivery == DeliveryJournal {
		cfg[wire.ConfigJournal] = JournalEndpoint
	}
	for k, v := range s.opts.EdgeConfig {
		cfg[k] = v
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "[local_server.config_stores.edgepixel]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixel.contents]\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%q = %q\n", k, cfg[k]) // quoted: keys such as site.NAME hold dots
	}
	fmt.Fprintf(&b, "\n[local_server.secret_stores]\nedgepixel = [{ key = %q, file = %q }", storekeys.AggregatorSecret, filepath.Join(s.opts.Dir, "secret"))
	for _, k := range secrets {
		fmt.Fprintf(&b, ",\n  { key = %q, file = %q }", k, s.SecretFile(k))
	}
	b.WriteString("]\n")
	return b.String()
}

// SecretFile is where the edge secret name (Options.EdgeSecrets) is kept.
func (s *Stack) SecretFile(name string) string {
	return filepath.Join(s.opts.Dir, "secrets", name)
}

// secretNames lists, sorted, the edge secrets the manifest names: every
// file in Dir/secrets, where writeEdgeSecrets put Options.EdgeSecrets and
// where `make run` keeps the visitor salts and the user's pixel keys.
// Dotfiles and editor leftovers (editorLeftover) are skipped; any other
// name Fastly would refuse is an error naming the file, since the POP's
// own error would not say where the name came from.
func (s *Stack) secretNames() ([]string, error) {
	dir := filepath.Join(s.opts.Dir, "secrets")
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || editorLeftover(e.Name()) {
			continue
		}
		if err := fastlytoml.CheckSecretName(e.Name()); err != nil {
			return nil, fmt.Errorf("%s: every file in %s is a secret of the edge module, named by the file: %w; rename or remove the file", filepath.Join(dir, e.Name()), dir, err)
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// editorLeftover reports whether name is an editor's backup, swap or
// autosave file (name~, name.swp, #name#), which an edit of a secret in
// place leaves beside it and which is no secret.
func editorLeftover(name string) bool {
	return strings.HasSuffix(name, "~") || strings.HasSuffix(name, ".swp") || strings.HasSuffix(name, ".swo") ||
		len(name) > 1 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")
}

// writeEdgeSecrets writes Options.EdgeSecrets' files.
func (s *Stack) writeEdgeSecrets() error {
	if len(s.opts.EdgeSecrets) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(s.opts.Dir, "secrets"), 0o700); err != nil {
		return err
	}
	for k, v := range s.opts.EdgeSecrets {
		if err := os.WriteFile(s.SecretFile(k), []byte(v), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// popStopGrace is how long Stop waits for the POP before it kills it:
// past the POP's own --shutdown-timeout (30 s by default), so that a POP
// whose guests used all of it still closes its log endpoints and says
// what it could not deliver (a tester's was killed 2 ms after that line).
const popStopGrace = 45 * time.Second

// Stop shuts the stack down in reverse order, each part gracefully: the POP
// first so its instances flush buffered events to a still-running
// aggregator, which in turn finishes its in-flight load.
func (s *Stack) Stop() error {
	var errs []error
	errs = append(errs, s.Pop.Stop(popStopGrace))
	for _, m := range s.More {
		errs = append(errs, m.Proc.Stop(30*time.Second))
	}
	errs = append(errs, s.Aggregator.Stop(30*time.Second))
	if s.RedisCluster != nil {
		errs = append(errs, s.RedisCluster.Stop())
	}
	if s.ClickHouse != nil {
		errs = append(errs, s.ClickHouse.Stop())
	}
	if s.Redis != nil {
		errs = append(errs, s.Redis.Stop())
	}
	return errors.Join(errs...)
}

// EnsureSecret returns the shared secret stored at path, creating a random
// one on first use so that restarts keep using the same secret.
func EnsureSecret(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return []byte(s), nil
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// No trailing newline: the POP hands the file to the edge byte for byte.
	return []byte(s), os.WriteFile(path, []byte(s), 0o600)
}
