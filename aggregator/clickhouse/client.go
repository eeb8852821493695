// Package clickhouse stores events in ClickHouse.
//
// The default transport is the HTTP interface, because it must work with
// ClickHouse 18.16 (the version Debian ships), which ch-go's native client
// cannot talk to. Inserts are still binary: rows are encoded as a
// Native-format block with ch-go's column types and POSTed as
// `INSERT ... FORMAT Native`, which is several times cheaper than text
// formats for the server and for us.
//
// With a native://host:9000 URL the client speaks the native TCP protocol
// through ch-go instead, for ClickHouse 19.x and later; it refuses older
// servers at connect (see MinNativeRevision).
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/edgepixel/edgepixel/shared/redact"
)

// Client talks to one ClickHouse server.
type Client struct {
	base     string // scheme://host:port, no trailing slash
	db       string
	user     string
	password string
	hc       *http.Client
	nat      *native // set for native:// URLs; then base and hc are unused

	layout Layout
	quorum int // the cluster's insert quorum
	// insertSettings are query settings of every insert (see
	// baseInsertSettings; the cluster's insert_quorum).
	insertSettings map[string]string
	// insertTimeout bounds an insert request in a cluster (0: none); see
	// SetCluster.
	insertTimeout time.Duration
	// readOnlyRestart and stuckSince: see restartStuckReplicas.
	readOnlyRestart time.Duration
	stuckMu         sync.Mutex
	stuckSince      map[string]time.Time // table: first seen stuck

	// spare is a Native block buffer kept for the next insert (not a
	// sync.Pool: that drops its contents at every other GC, and a loaded
	// aggregator collects several times per insert).
	spareMu sync.Mutex
	spare   []byte
}

// idleConnTimeout closes an idle connection before the server does:
// ClickHouse closes one after keep_alive_timeout (3 s by default), and a
// request written on a connection the server is closing at that moment
// fails with EOF, which Go's transport does not retry for a POST.
const idleConnTimeout = 2 * time.Second

// CheckURL reports whether baseURL is a server New can talk to: http,
// https (the HTTP interface) or native (the native protocol), with a
// host. It connects to nothing; its error says what is wanted, for the
// caller to name the value.
func CheckURL(baseURL string) error {
	_, err := parseURL(baseURL)
	return err
}

// parseURL is baseURL parsed, if CheckURL takes it.
func parseURL(baseURL string) (*url.URL, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "native") || u.Host == "" {
		return nil, errors.New("want http://HOST:8123 (or https://) or native://HOST:9000")
	}
	return u, nil
}

// CheckName reports whether name, a database's or a cluster's, is one
// this package writes into SQL unquoted; its error says what is wanted.
func CheckName(name string) error {
	if !validIdent(name) {
		return errors.New("letters, digits and _ only")
	}
	return nil
}

// New returns a client for the server at baseURL storing into database db:
// http://host:8123 (or https://, with optional user:password@) for the HTTP
// interface, native://host:9000 for the native TCP protocol. An HTTP client
// does not connect. A native client makes one probe connection (a few
// seconds at most) so that a server too old for the native protocol is
// refused here, at start-up, with a *TooOldError, rather than retried
// forever by the loader; an unreachable server is not an error here.
func New(baseURL, db string) (*Client, error) {
	u, err := parseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("clickhouse url %q: %w", redact.URL(baseURL), err)
	}
	if err := CheckName(db); err != nil {
		return nil, fmt.Errorf("clickhouse database %q: %w", db, err)
	}
	if u.Scheme == "native" {
		c := &Client{db: db, nat: newNative(u), insertSettings: baseInsertSettings()}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.nat.ping(ctx); errors.Is(err, ErrServerTooOld) {
			return nil, err
		}
		return c, nil
	}
	c := &Client{base: u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"), db: db, insertSettings: baseInsertSettings(),
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: idleConnTimeout}}}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
	}
	return c, nil
}

// baseInsertSettings are the query settings of every insert on a single
// server (a cluster's: SetCluster). parallel_view_processing runs the
// materialized views of the events table (a dozen rollups, most of an
// insert's work) side by side rather than one after another; the loader
// has one insert in flight at a time, so without it an insert's views
// use one core (ClickHouse's settings: "Enables pushing to attached
// views concurrently instead of sequentially"; off by default).
func baseInsertSettings() map[string]string {
	return map[string]string{"parallel_view_processing": "1"}
}

func validIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// Error is an error answered by the server.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("clickhouse: %d: %s", e.Status, e.Message) }

// TimedOut reports whether the server gave up on the statement for a
// timeout of its own: error code 159, TIMEOUT_EXCEEDED (ClickHouse's
// ErrorCodes.cpp), which its messages spell "Code: 159".
func (e *Error) TimedOut() bool { return strings.Contains(e.Message, "Code: 159,") }

// do POSTs body to the server with the given query parameters and returns
// the response body. A non-200 answer becomes an *Error.
// do posts body (a statement, or an INSERT's data after the statement in
// params) and returns the answer. replayable marks a statement that may
// run twice (a SELECT, an idempotent DDL statement): Go's transport then
// sends it again when a kept-alive connection turns out closed before any
// answer (the server closing it as it was reused), which it never does for
// other POSTs.
func (c *Client) do(ctx context.Context, params url.Values, body io.Reader, replayable bool) ([]byte, error) {
	u := c.base + "/"
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return nil, err
	}
	if r, ok := body.(*releasableReader); ok {
		req.ContentLength = int64(r.Len()) // else it would be sent chunked
	}
	if replayable {
		// net/http's Request.isReplayable: a POST with this header
		// (and a body it can get again) is retried like a GET.
		req.Header.Set("X-Idempotency-Key", "1")
	}
	if c.user != "" {
		req.Header.Set("X-ClickHouse-User", c.user)
		req.Header.Set("X-ClickHouse-Key", c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return nil, &Error{Status: resp.StatusCode, Message: msg}
	}
	return b, nil
}

// Exec runs a statement that returns nothing of interest.
func (c *Client) Exec(ctx context.Context, sql string) error {
	if c.nat != nil {
		return c.nat.exec(ctx, sql)
	}
	_, err := c.do(ctx, nil, strings.NewReader(sql), false)
	return err
}

// execSettings runs a statement with query-scoped settings (name to
// value).
func (c *Client) execSettings(ctx context.Context, sql string, settings map[string]string) error {
	return c.execWith(ctx, sql, settings, false)
}

// execWith is execSettings, for a statement that may run twice if
// replayable (see do).
func (c *Client) execWith(ctx context.Context, sql string, settings map[string]string, replayable bool) error {
	if c.nat != nil {
		q := ch.Query{Body: sql}
		for k, v := range settings {
			q.Settings = append(q.Settings, ch.Setting{Key: k, Value: v, Important: true})
		}
		return c.nat.do(ctx, q)
	}
	params := url.Values{}
	for k, v := range settings {
		params.Set(k, v)
	}
	_, err := c.do(ctx, params, strings.NewReader(sql), replayable)
	return err
}

// Query runs a SELECT and returns its rows as TabSeparated fields, already
// unescaped. The caller must not add a FORMAT clause.
func (c *Client) Query(ctx context.Context, sql string) ([][]string, error) {
	if c.nat != nil {
		return c.nat.query(ctx, sql)
	}
	b, err := c.do(ctx, nil, strings.NewReader(sql+" FORMAT TabSeparated"), true)
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		for i := range f {
			f[i] = unescapeTSV(f[i])
		}
		rows = append(rows, f)
	}
	return rows, nil
}

// unescapeTSV undoes ClickHouse's TabSeparated escaping.
func unescapeTSV(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// quote returns s as a ClickHouse string literal.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// ClusterConfig places a client in a cluster (see Layout).
type ClusterConfig struct {
	// Name is the cluster's name in the servers' remote_servers.
	Name string
	// InsertQuorum is ClickHouse's insert_quorum for every insert: how
	// many replicas of the shard must have written a block before the
	// insert succeeds (0 or 1: the one written to). An insert that cannot
	// reach it fails and is retried; meanwhile the spool keeps the rows.
	InsertQuorum int
	// QuorumTimeout is insert_quorum_timeout: how long an insert waits for
	// the quorum (0: the server's default, 10 minutes).
	QuorumTimeout time.Duration
	// ReadOnlyRestart is how long a replica of the server the client
	// inserts into may refuse inserts as read-only (code 242) while its
	// ZooKeeper session is alive before an insert that met it restarts
	// it (SYSTEM RESTART REPLICA): 0 is DefaultReadOnlyRestart, which says
	// why.
	ReadOnlyRestart time.Duration
}

// SetCluster makes c use the cluster layout: the schema is made on every
// server of cc.Name, inserts go to the local replicated tables of the
// server c talks to (its shard), with cc.InsertQuorum, and reads go
// through the Distributed tables. Call it before any other method.
//
// Inserts into replicated tables are deduplicated by ClickHouse per
// shard: a block the same as one of the shard's recent blocks (the
// replicated_deduplication_window, 100 by default) is acknowledged and
// dropped, so retrying a block whose insert may or may not have been
// stored is safe when the retry is the same block (see InsertEvents).
func (c *Client) SetCluster(cc ClusterConfig) error {
	if err := CheckName(cc.Name); err != nil {
		return fmt.Errorf("clickhouse cluster %q: %w", cc.Name, err)
	}
	if cc.InsertQuorum < 0 {
		return fmt.Errorf("clickhouse insert quorum %d: want 0 or more replicas", cc.InsertQuorum)
	}
	c.layout = Layout{Cluster: cc.Name}
	c.quorum = cc.InsertQuorum
	c.readOnlyRestart = cc.ReadOnlyRestart
	if c.readOnlyRestart <= 0 {
		c.readOnlyRestart = DefaultReadOnlyRestart
	}
	// Views one after another, and said so in case a server's profile
	// says otherwise: EventsView must run after every rollup view (see
	// CreateView), and in parallel it would store a block's events whose
	// rollups failed, which a replayed journal then takes as counted.
	c.insertSettings = map[string]string{"parallel_view_processing": "0"}
	if cc.InsertQuorum > 1 {
		c.insertSettings["insert_quorum"] = strconv.Itoa(cc.InsertQuorum)
		if cc.QuorumTimeout > 0 {
			c.insertSettings["insert_quorum_timeout"] = strconv.FormatInt(cc.QuorumTimeout.Milliseconds(), 10)
		}
	}
	c.insertTimeout = serverQuorumTimeout + insertTimeoutMargin
	if cc.QuorumTimeout > 0 {
		c.insertTimeout = cc.QuorumTimeout + insertTimeoutMargin
	}
	return nil
}

// serverQuorumTimeout is ClickHouse's default insert_quorum_timeout.
const serverQuorumTimeout = 10 * time.Minute

// insertTimeoutMargin is what an insert request in a cluster gets beyond
// the longest quorum wait before it is given up (and retried). Without a
// limit, a connection the server will never answer on (a server frozen
// or cut off mid-request) held its loader for good. Giving up is safe
// only in a cluster: the retry is the same block, which the replicated
// tables keep once even while the first request still runs. On one
// server a retry asks the events table which events are stored, and an
// insert still running there would be stored twice, so there is no
// limit. A variable for tests.
var insertTimeoutMargin = time.Minute

// DeduplicatesBlocks implements store.BlockDeduplicator: in a cluster,
// events go to replicated tables, which keep a block inserted again
// unchanged once (within the shard's last replicated_deduplication_window
// blocks, 100 by default).
func (c *Client) DeduplicatesBlocks() bool { return c.layout.Clustered() }

// Layout returns the client's layout.
func (c *Client) Layout() Layout { return c.layout }

// insert stores input as one block into table (a name in c.db; its local
// table in a cluster).
func (c *Client) insert(ctx context.Context, table string, rows int, input proto.Input) error {
	return c.insertInto(ctx, c.layout.LocalName(table), rows, input)
}

// insertInto stores input as one block into table, a name in c.db as it
// is (not its Local form). In a cluster, an insert refused because a
// replica is read-only restarts the replicas stuck so (see
// restartStuckReplicas); the error says which.
func (c *Client) insertInto(ctx context.Context, table string, rows int, input proto.Input) error {
	err := c.insertBlock(ctx, table, rows, input)
	if err == nil || !c.layout.Clustered() || !readOnly(err) {
		return err
	}
	restarted, rerr := c.restartStuckReplicas(ctx)
	if rerr != nil {
		return fmt.Errorf("%w (looking for replicas stuck read-only: %v)", err, rerr)
	}
	if len(restarted) > 0 {
		return fmt.Errorf("%w (restarted replicas %s: read-only with a live ZooKeeper session for %v)", err, strings.Join(restarted, ", "), c.readOnlyRestart)
	}
	return err
}

// insertBlock is insertInto without the read-only check.
func (c *Client) insertBlock(ctx context.Context, table string, rows int, input proto.Input) error {
	if c.insertTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.insertTimeout)
		defer cancel()
	}
	if c.nat != nil {
		return c.nat.insert(ctx, c.db+"."+table, input, c.insertSettings)
	}
	// The block buffer (tens of MB for a full load) is reused: allocating
	// it per insert cost a zeroing of the whole buffer and GC work each time.
	c.spareMu.Lock()
	buf := c.spare[:0]
	c.spare = nil
	c.spareMu.Unlock()
	buf, err := appendNative(buf, rows, input)
	if err != nil {
		return fmt.Errorf("clickhouse: encode: %w", err)
	}
	q := url.Values{"query": {"INSERT INTO " + c.db + "." + table + " FORMAT Native"}}
	for k, v := range c.insertSettings {
		q.Set(k, v)
	}
	body := &releasableReader{b: buf}
	_, err = c.do(ctx, q, body, false)
	// The transport may still read a body after Do returned (it closes it
	// asynchronously on some errors): cut it off before the buffer is reused.
	body.release()
	c.spareMu.Lock()
	if cap(buf) > cap(c.spare) {
		c.spare = buf
	}
	c.spareMu.Unlock()
	return err
}

// releasableReader reads b until release, after which it reads nothing
// more and never touches b again.
type releasableReader struct {
	mu  sync.Mutex
	b   []byte
	off int
}

func (r *releasableReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b == nil {
		return 0, errors.New("clickhouse: request body released")
	}
	if r.off == len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *releasableReader) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.b) - r.off
}

func (r *releasableReader) release() {
	r.mu.Lock()
	r.b = nil
	r.mu.Unlock()
}

// Ping checks that the server answers a query as the client's user (or
// a native ping, on a connection its handshake authenticated): not
// /ping, which ClickHouse answers without reading credentials, so a
// wrong password was "ok" while every insert and query failed.
func (c *Client) Ping(ctx context.Context) error {
	if c.nat != nil {
		return c.nat.ping(ctx)
	}
	_, err := c.Query(ctx, "SELECT 1")
	return err
}

// Name implements store.Store.
func (c *Client) Name() string { return "clickhouse" }

// Close releases idle connections.
func (c *Client) Close() error {
	if c.nat != nil {
		return c.nat.close()
	}
	c.hc.CloseIdleConnections()
	return nil
}

func parseUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("clickhouse: unexpected number " + strconv.Quote(s))
	}
	return n, nil
}

// DB returns the database the client uses.
func (c *Client) DB() string { return c.db }

// Quote returns s as a ClickHouse string literal.
func Quote(s string) string { return quote(s) }
