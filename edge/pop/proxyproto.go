package pop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/edgepixel/edgepixel/shared/clientip"
)

// The PROXY protocol on client connections. With Config.ProxyProtocol
// every connection from a trusted proxy must start with a PROXY header
// (package clientip parses it), read before anything else, TLS included;
// one that does not, or whose header is malformed, is closed and counted
// (edgepixel_pop_client_rejects_total{reason="proxy_header"}).

// readProxy reads the connection's PROXY header, once, and reports
// whether it has been read (always true: it waits). It is called by the
// first RemoteAddr, LocalAddr or Read, whichever comes first: net/http
// asks for the addresses before it reads, and TLS reads after. The header
// must arrive within the head timeout. A connection whose header is
// missing or malformed is refused: its reads fail with an error net/http
// closes the connection on without answering (a proxy is not a client
// to tell), and it is counted; so is one that would exceed the client
// address's connection cap, which a cleartext connection is told with a
// 503.
func (c *clientConn) readProxy() bool {
	c.proxyOnce.Do(func() {
		if d := c.t.headerTimeout; d > 0 {
			c.Conn.SetReadDeadline(time.Now().Add(d))
			defer c.Conn.SetReadDeadline(time.Time{})
		}
		buf := make([]byte, 0, 256)
		for {
			h, n, err := clientip.ParseProxyHeader(buf)
			if err == nil {
				c.pre = buf[n:]
				c.useProxy(h)
				return
			}
			if err != clientip.ErrShort {
				c.t.rejects[rejectProxyHeader].Add(1)
				c.proxyErr = c.readError(err)
				return
			}
			if len(buf) == cap(buf) {
				buf = append(buf, make([]byte, min(cap(buf), clientip.MaxProxyHeader))...)[:len(buf)]
			}
			m, rerr := c.Conn.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if rerr == nil {
				continue
			}
			switch {
			case isTimeout(rerr):
				c.t.timeouts[phaseHeader].Add(1)
			case len(buf) > 0:
				c.t.rejects[rejectProxyHeader].Add(1) // cut off mid-header
			case errors.Is(rerr, io.EOF):
				c.proxyErr = io.EOF // connected and closed: a health check
				return
			}
			c.proxyErr = c.readError(fmt.Errorf("reading the PROXY header: %w", rerr))
			return
		}
	})
	return true
}

// useProxy takes the addresses of a PROXY header, and counts the
// connection against the client's cap.
func (c *clientConn) useProxy(h clientip.ProxyHeader) {
	if h.Local {
		return
	}
	if !c.t.rekey(c, h.Src.Addr()) {
		c.t.refused[refusalPerAddr].Add(1)
		if c.scans {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c.Conn, refusalAnswers[refusalPerAddr])
		}
		c.proxyErr = c.readError(errors.New("too many connections from the client's address"))
		return
	}
	c.src = net.TCPAddrFromAddrPort(h.Src)
	c.dst = net.TCPAddrFromAddrPort(h.Dst)
}

// readError wraps err as a failed read, which net/http closes the
// connection on without writing anything.
func (c *clientConn) readError(err error) error {
	return &net.OpError{Op: "read", Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: err}
}

// RemoteAddr is the client's address: the PROXY header's source, if the
// connection has one, else the peer's.
func (c *clientConn) RemoteAddr() net.Addr {
	if c.proxied && c.readProxy() && c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to: the PROXY header's
// destination (the proxy's), if the connection has one, else the
// listener's.
func (c *clientConn) LocalAddr() net.Addr {
	if c.proxied && c.readProxy() && c.dst != nil {
		return c.dst
	}
	return c.Conn.LocalAddr()
}

// peer is the address of the proxy that relayed the connection, "" if
// none did.
func (c *clientConn) peer() string {
	if c.proxied && c.src != nil {
		return c.Conn.RemoteAddr().String()
	}
	return ""
}
