package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
)

// MinNativeRevision is the oldest server protocol revision the native
// client works with (ClickHouse 19.x). ch-go sends a query's client-info
// block only to servers from this revision on, while older servers expect
// it from 54032: every query to them fails with UNKNOWN_SETTING. So older
// servers are refused at connect with a message pointing to HTTP, which
// works with every version.
const MinNativeRevision = 54420

// ErrServerTooOld is returned (wrapped in a *TooOldError) for a native
// connection to a server older than MinNativeRevision.
var ErrServerTooOld = errors.New("clickhouse server too old for the native protocol")

// TooOldError says which server was refused and what to do instead.
type TooOldError struct {
	Addr     string
	Server   proto.ServerHello
	HTTPHint string // the HTTP URL to use instead, a guess at the default port
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("clickhouse at %s is %s %d.%d.%d (protocol revision %d); the native TCP protocol needs ClickHouse 19.x or later (revision %d or later): use its HTTP interface instead, e.g. --clickhouse %s",
		e.Addr, e.Server.Name, e.Server.Major, e.Server.Minor, e.Server.Patch, e.Server.Revision, MinNativeRevision, e.HTTPHint)
}

func (e *TooOldError) Unwrap() error { return ErrServerTooOld }

// native is one ch-go connection, opened lazily and reopened after a
// connection-level failure. ch-go's client is not safe for concurrent use;
// the aggregator's queries are few (one loader, occasional API and admin
// calls), so one connection behind a mutex is enough.
type native struct {
	addr, user, password string
	mu                   sync.Mutex
	c                    *ch.Client
}

func newNative(u *url.URL) *native {
	n := &native{addr: u.Host}
	if u.Port() == "" {
		n.addr = u.Host + ":9000"
	}
	if u.User != nil {
		n.user = u.User.Username()
		n.password, _ = u.User.Password()
	}
	return n
}

// conn returns the open connection or dials one, refusing servers older
// than MinNativeRevision. Called with n.mu held.
func (n *native) conn(ctx context.Context) (*ch.Client, error) {
	if n.c != nil && !n.c.IsClosed() {
		return n.c, nil
	}
	c, err := ch.Dial(ctx, ch.Options{Address: n.addr, User: n.user, Password: n.password,
		DialTimeout: 5 * time.Second, HandshakeTimeout: 10 * time.Second, ClientName: "edgepixel"})
	if err != nil {
		return nil, fmt.Errorf("clickhouse native %s: %w", n.addr, err)
	}
	if info := c.ServerInfo(); info.Revision < MinNativeRevision {
		c.Close()
		host, _, _ := splitHostPort(n.addr)
		return nil, &TooOldError{Addr: n.addr, Server: info, HTTPHint: "http://" + host + ":8123"}
	}
	n.c = c
	return c, nil
}

func splitHostPort(addr string) (string, string, error) {
	u, err := url.Parse("//" + addr)
	if err != nil {
		return addr, "", err
	}
	return u.Hostname(), u.Port(), nil
}

// do runs q, dropping the connection after any failure that is not an
// answer from the server (the connection state is then unknown).
func (n *native) do(ctx context.Context, q ch.Query) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	if err := c.Do(ctx, q); err != nil {
		if !ch.IsException(err) {
			c.Close()
			n.c = nil
		}
		return fmt.Errorf("clickhouse native: %w", err)
	}
	return nil
}

func (n *native) exec(ctx context.Context, sql string) error {
	return n.do(ctx, ch.Query{Body: sql})
}

// query returns the rows of a SELECT as strings, as the HTTP path's
// TabSeparated does: numbers in decimal, strings as they are. Columns are
// typed by the server's header (proto.ColAuto).
func (n *native) query(ctx context.Context, sql string) ([][]string, error) {
	var res proto.Results
	var rows [][]string
	err := n.do(ctx, ch.Query{Body: sql, Result: res.Auto(), OnResult: func(_ context.Context, b proto.Block) error {
		for i := 0; i < b.Rows; i++ {
			row := make([]string, len(res))
			for j, col := range res {
				row[j] = cell(col.Data, i)
			}
			rows = append(rows, row)
		}
		return nil
	}})
	return rows, err
}

// cell formats row i of a decoded column. Every query here selects only
// strings and unsigned integers, but any column with a Row method works.
func cell(col proto.ColResult, i int) string {
	if auto, ok := col.(*proto.ColAuto); ok {
		col = auto.Data
	}
	switch c := col.(type) {
	case *proto.ColStr:
		return c.Row(i)
	case *proto.ColUInt64:
		return fmt.Sprint(c.Row(i))
	case *proto.ColUInt32:
		return fmt.Sprint(c.Row(i))
	case *proto.ColUInt8:
		return fmt.Sprint(c.Row(i))
	}
	m := reflect.ValueOf(col).MethodByName("Row")
	if !m.IsValid() {
		return ""
	}
	return fmt.Sprint(m.Call([]reflect.Value{reflect.ValueOf(i)})[0].Interface())
}

// insert sends input as one block into table (db.name, not quoted).
func (n *native) insert(ctx context.Context, table string, input proto.Input, settings map[string]string) error {
	q := ch.Query{Body: "INSERT INTO " + table + " " + input.Columns() + " VALUES", Input: input}
	for k, v := range settings {
		q.Settings = append(q.Settings, ch.Setting{Key: k, Value: v, Important: true})
	}
	return n.do(ctx, q)
}

func (n *native) ping(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	if err := c.Ping(ctx); err != nil {
		c.Close()
		n.c = nil
		return fmt.Errorf("clickhouse native: %w", err)
	}
	return nil
}

func (n *native) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.c != nil {
		err := n.c.Close()
		n.c = nil
		return err
	}
	return nil
}
