package localsrv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// Where Debian's clickhouse-server package puts its configuration; the
// private server's configuration is derived from it so that it matches the
// installed version.
var (
	SystemConfig = deps.ClickHouse.Files[0] // /etc/clickhouse-server/config.xml
	SystemUsers  = deps.ClickHouse.Files[1] // /etc/clickhouse-server/users.xml
)

// ClickHouse is a running private clickhouse-server.
type ClickHouse struct {
	HTTPURL string // http://127.0.0.1:port
	TCPAddr string // 127.0.0.1:port (native protocol)
	Dir     string
	p       *proc.Proc
	token   string
	extra   string // configuration elements added (a cluster member's)
	errFrom int64  // the size of its error log when it started: what follows is this run's
	// compression is the method the server compresses parts with.
	compression string
}

// Compression is the method the servers started here compress their
// parts with: zstd stores the events table in far less than ClickHouse's
// default lz4 (README, Benchmarks: storage). It is a server setting
// (config.xml's <compression>, see CompressionConfig), not the schema's:
// README tells users running their own ClickHouse to set it.
const Compression = "zstd"

// CompressionConfig returns config.xml's <compression> element for
// method. For zstd it has two cases, of which ClickHouse takes the last
// that a part matches: new parts (inserts) and merges of small parts
// compress at zstd's default level, cheap on CPU; a merge whose parts
// hold at least 100 kB (nearly every merge of a busy table) at level 15,
// which finds what repeats across rows (the time bits of the ids, the
// URLs) for more CPU on merges (README, Benchmarks: storage).
func CompressionConfig(method string) string {
	if method != "zstd" {
		return "<compression><case><method>" + method + "</method></case></compression>"
	}
	return "<compression><case><method>zstd</method></case>" +
		"<case><min_part_size>100000</min_part_size><min_part_size_ratio>0</min_part_size_ratio><method>zstd</method><level>15</level></case></compression>"
}

// MergeTreeConfig is config.xml's <merge_tree> element for the servers
// started here. ClickHouse 18.16 keeps the parts a merge replaced on disk
// for old_parts_lifetime (8 minutes by default) in case the merged part
// did not reach the disk, and loads them again at a restart unless an
// active part covers them. A dropped partition's merged part is removed
// at once, so a restart within those minutes brings its rows back
// (ClickHouse issue 15742), as it does the parts a backfill's REPLACE
// PARTITION replaced. A minute, longer than the kernel takes to write a
// merged part back (dirty_expire_centisecs, 30 s), checked every 10
// seconds, shrinks that window without giving up the protection. README
// tells users running their own ClickHouse to set it.
const MergeTreeConfig = "<merge_tree><old_parts_lifetime>60</old_parts_lifetime><cleanup_delay_period>10</cleanup_delay_period><cleanup_delay_period_random_add>0</cleanup_delay_period_random_add></merge_tree>"

// ClickHouseAvailable reports whether clickhouse-server is installed (with
// the configuration StartClickHouse derives from), and where.
func ClickHouseAvailable() (path string, ok bool) { return deps.ClickHouse.Path("") }

// StartClickHouse starts clickhouse-server with its data in dir, HTTP and
// native TCP on the given loopback ports (0 picks free ones), and waits
// until GET /ping answers.
func StartClickHouse(ctx context.Context, dir string, httpPort, tcpPort int) (*ClickHouse, error) {
	return startClickHouse(ctx, dir, httpPort, tcpPort, "", Compression)
}

// StartClickHouseCompressed is StartClickHouse with the parts compressed
// by method ("lz4", ClickHouse's default, or "zstd"): the storage bench
// compares the two.
func StartClickHouseCompressed(ctx context.Context, dir string, httpPort, tcpPort int, method string) (*ClickHouse, error) {
	return startClickHouse(ctx, dir, httpPort, tcpPort, "", method)
}

// startClickHouse is StartClickHouse with extra elements (XML) added to
// the top level of the configuration. A server with extra configuration
// is a cluster member: its default profile, which distributed DDL runs
// with, allows LowCardinality columns (an experimental type in 18.16),
// else a Distributed table over a table that has one cannot be made on
// the other servers.
//
// Ports it picked itself (0) that another process takes before the
// server binds them (it binds seconds after starting) are picked again,
// up to three times.
func startClickHouse(ctx context.Context, dir string, httpPort, tcpPort int, extra, compression string) (*ClickHouse, error) {
	for try := 1; ; try++ {
		c, err := startClickHouseOnce(ctx, dir, httpPort, tcpPort, extra, compression)
		if err == nil || httpPort != 0 || tcpPort != 0 || try == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return c, err
		}
	}
}

func startClickHouseOnce(ctx context.Context, dir string, httpPort, tcpPort int, extra, compression string) (*ClickHouse, error) {
	bin, ok := ClickHouseAvailable()
	if !ok {
		return nil, fmt.Errorf("clickhouse-server not found; %s", deps.Advice([]deps.Program{deps.ClickHouse}))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if httpPort, err = portOr(httpPort); err != nil {
		return nil, err
	}
	if tcpPort, err = portOr(tcpPort); err != nil {
		return nil, err
	}
	base, err := os.ReadFile(SystemConfig)
	if err != nil {
		return nil, err
	}
	users, err := os.ReadFile(SystemUsers)
	if err != nil {
		return nil, err
	}
	cfgDir := filepath.Join(dir, "etc")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(cfgDir, "config.xml")
	if err := os.WriteFile(cfg, []byte(privateConfig(string(base), dir, httpPort, tcpPort, extra, compression)), 0o644); err != nil {
		return nil, err
	}
	// ClickHouse 18.16 runs a query on as many threads as it counts
	// physical cores (max_threads "auto"), which it reads from CPUID; in
	// a virtual machine that can be fewer than the machine has (1 of 2
	// vCPUs of an AMD EPYC here, each query single-threaded).
	users = defaultProfile.ReplaceAll(users, []byte("${1}\n            <max_threads>"+strconv.Itoa(runtime.NumCPU())+"</max_threads>"))
	if extra != "" {
		// A statement ON CLUSTER that has not finished on every server
		// in a minute is a hang here (a few tables, a few rows): failing
		// it then names the statement, where the default of 180 s, times
		// a caller's retries, outlasts the test binary's timeout.
		users = defaultProfile.ReplaceAll(users, []byte("${1}\n            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>\n            <distributed_ddl_task_timeout>60</distributed_ddl_task_timeout>"))
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "users.xml"), users, 0o644); err != nil {
		return nil, err
	}
	args := []string{"--config-file=" + cfg}
	if filepath.Base(bin) == "clickhouse" { // the multi-call binary
		args = append([]string{"server"}, args...)
	}
	// Once it runs, the server says what went wrong in its own error log,
	// which keeps earlier runs' errors: only what comes after is this run's.
	errLog := ClickHouseErrLog(dir)
	errFrom := proc.LogSize(errLog)
	p, err := proc.Start("clickhouse-server", proc.Options{Log: filepath.Join(dir, "stdout.log")}, bin, args...)
	if err != nil {
		return nil, err
	}
	c := &ClickHouse{HTTPURL: "http://" + hostPort(httpPort), TCPAddr: hostPort(tcpPort), Dir: dir, p: p, extra: extra, compression: compression, errFrom: errFrom}
	// A token only this server can read proves that the server answering on
	// the port is ours and not one that held the port already.
	c.token = strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.Itoa(p.Pid())
	if err := os.MkdirAll(filepath.Join(dir, "user_files"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "user_files", "localsrv-token"), []byte(c.token+"\n"), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, func() error {
		if p.Log != errLog && proc.LogSize(errLog) > errFrom {
			p.SetLog(errLog, errFrom)
		}
		return c.ping()
	}); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	xmlComment = regexp.MustCompile(`(?s)<!--.*?-->`)
	// Elements the private server must not take from the system config:
	// ports it would clash on, listen addresses beyond loopback, and the
	// example clusters, ZooKeeper and macros (a cluster member gets its
	// own).
	dropElems      = regexp.MustCompile(`(?s)\s*<(interserver_http_port|interserver_https_port|interserver_http_host|https_port|tcp_port_secure|mysql_port|postgresql_port|listen_host|timezone|remote_servers)\b[^>]*?>.*?</(interserver_http_port|interserver_https_port|interserver_http_host|https_port|tcp_port_secure|mysql_port|postgresql_port|listen_host|timezone|remote_servers)>`)
	dropEmpty      = regexp.MustCompile(`\s*<(zookeeper|macros)\b[^>]*/>`)
	defaultProfile = regexp.MustCompile(`(?s)(<profiles>.*?<default>)`)
	graphite       = regexp.MustCompile(`(?s)\s*<graphite>.*?</graphite>`)
	compressionEl  = regexp.MustCompile(`(?s)\s*<compression\b[^>]*?(/>|>.*?</compression>)`)
)

// privateConfig rewrites the system configuration for a server that keeps
// everything under dir and listens on 127.0.0.1 only, and compresses
// every part with compression.
func privateConfig(base, dir string, httpPort, tcpPort int, extra, compression string) string {
	s := xmlComment.ReplaceAllString(base, "")
	s = dropElems.ReplaceAllString(s, "")
	s = dropEmpty.ReplaceAllString(s, "")
	s = graphite.ReplaceAllString(s, "")
	s = compressionEl.ReplaceAllString(s, "")
	set := func(tag, val string) {
		re := regexp.MustCompile(`(?s)<` + tag + `>.*?</` + tag + `>`)
		done := false
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			if done { // only the first, top-level one (distributed_ddl has a <path> too)
				return m
			}
			done = true
			return "<" + tag + ">" + val + "</" + tag + ">"
		})
		if !done {
			s = strings.Replace(s, "</yandex>", "    <"+tag+">"+val+"</"+tag+">\n</yandex>", 1)
		}
	}
	set("path", filepath.Join(dir, "data")+"/")
	set("tmp_path", filepath.Join(dir, "tmp")+"/")
	set("user_files_path", filepath.Join(dir, "user_files")+"/")
	set("format_schema_path", filepath.Join(dir, "format_schemas")+"/")
	set("log", ClickHouseLog(dir))
	set("errorlog", ClickHouseErrLog(dir))
	set("level", "warning")
	set("size", "100M")
	set("count", "2")
	set("http_port", strconv.Itoa(httpPort))
	set("tcp_port", strconv.Itoa(tcpPort))
	set("users_config", "users.xml")
	// Caches are allocated on demand, but keep them modest for a laptop.
	set("mark_cache_size", strconv.Itoa(256<<20))
	set("uncompressed_cache_size", strconv.Itoa(256<<20))
	// UTC makes toStartOfMinute() buckets line up with unix minutes whatever
	// the machine's zone.
	extra = "\n    <listen_host>127.0.0.1</listen_host>\n    <timezone>UTC</timezone>" +
		"\n    " + CompressionConfig(compression) + "\n    " + MergeTreeConfig + extra
	return strings.Replace(s, "<yandex>", "<yandex>"+extra, 1)
}

func (c *ClickHouse) ping() error {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(c.HTTPURL + "/ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "Ok.") {
		return fmt.Errorf("/ping answered %s %q", resp.Status, b)
	}
	if c.token == "" {
		return nil
	}
	resp, err = client.Post(c.HTTPURL+"/", "text/plain", strings.NewReader("SELECT s FROM file('localsrv-token', 'TabSeparated', 's String')"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(io.LimitReader(resp.Body, 1000))
	if strings.TrimSpace(string(b)) != c.token {
		return fmt.Errorf("another server answers on %s (%s %.200q)", c.HTTPURL, resp.Status, b)
	}
	return nil
}

// query runs sql and returns the answer's body.
func (c *ClickHouse) query(sql string) (string, error) { return c.queryWith("", sql) }

// queryWith is query with settings, a URL query (name=value&...).
func (c *ClickHouse) queryWith(settings, sql string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post(c.HTTPURL+"/?"+settings, "text/plain", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %.300s", resp.Status, b)
	}
	return string(b), nil
}

// Stop shuts the server down gracefully and waits for it.
func (c *ClickHouse) Stop() error {
	if c == nil {
		return nil
	}
	return c.p.Stop(30 * time.Second)
}

// Kill ends the server at once, as a crash would (for fault tests).
func (c *ClickHouse) Kill() error {
	if c == nil {
		return nil
	}
	return c.p.Kill()
}

// Done is closed when the server process has exited.
func (c *ClickHouse) Done() <-chan struct{} { return c.p.Done() }

// Err is how the server ended (nil for exit status 0); valid once Done
// is closed.
func (c *ClickHouse) Err() error { return c.p.Err() }

// Pid is the server's process id (for its CPU time and I/O in /proc).
func (c *ClickHouse) Pid() int { return c.p.Pid() }

// ClickHouseLog is all the clickhouse-server StartClickHouse runs in dir
// logs.
func ClickHouseLog(dir string) string { return filepath.Join(dir, "log", "clickhouse-server.log") }

// ClickHouseErrLog is its errors alone.
func ClickHouseErrLog(dir string) string {
	return filepath.Join(dir, "log", "clickhouse-server.err.log")
}
