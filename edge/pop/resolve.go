package pop

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Name overrides for backend connections, like curl's --resolve: a
// connection to HOST:PORT goes to ADDR (and, unlike curl, optionally
// another port) instead of what DNS says. Everything else about the
// request stays as it was (the URL, the Host header, the TLS server name
// the certificate is checked against), so a backend named by a public
// hostname can be served by a stand-in, a staging machine or a second
// instance on loopback.

// ParseResolve parses "HOST:PORT:ADDR" or "HOST:PORT:ADDR:PORT2" (ADDR an
// IP address; an IPv6 one followed by a port goes in brackets) into the
// Config.Resolve key "HOST:PORT" and value "ADDR:PORT" (or "ADDR:PORT2").
func ParseResolve(spec string) (hostPort, addrPort string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("resolve %q: %s (want HOST:PORT:ADDR[:PORT])", spec, why)
	}
	host, rest, ok := strings.Cut(spec, ":")
	port, target, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || host == "" {
		return bad("malformed")
	}
	if !validPort(port) {
		return bad("bad port " + strconv.Quote(port))
	}
	toPort := port
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(target, "["), "]"))
	if err != nil {
		// ADDR:PORT2
		a, p, err2 := net.SplitHostPort(target)
		if err2 != nil || !validPort(p) {
			return bad(strconv.Quote(target) + " is not an IP address")
		}
		if ip, err = netip.ParseAddr(a); err != nil {
			return bad(strconv.Quote(a) + " is not an IP address")
		}
		toPort = p
	}
	return net.JoinHostPort(strings.ToLower(host), port), net.JoinHostPort(ip.String(), toPort), nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// resolving wraps dial so connections to an overridden HOST:PORT go to
// its address.
func resolving(overrides map[string]string, dial dialFunc) dialFunc {
	m := make(map[string]string, len(overrides))
	for k, v := range overrides {
		m[strings.ToLower(k)] = v
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := m[strings.ToLower(addr)]; ok {
			addr = to
		}
		return dial(ctx, network, addr)
	}
}
