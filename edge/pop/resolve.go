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
// connection to HOST:PORT goes to ADDR:PORT instead of what DNS says.
// Everything else about the request stays as it was (the URL, the Host
// header, the TLS server name the certificate is checked against), so a
// backend named by a public hostname can be served by a stand-in, a
// staging machine or a second instance on loopback.

// ParseResolve parses "HOST:PORT:ADDR" (ADDR an IP address; an IPv6 one
// may be in brackets) into the Config.Resolve key "HOST:PORT" and value
// "ADDR:PORT".
func ParseResolve(spec string) (hostPort, addrPort string, err error) {
	host, rest, ok := strings.Cut(spec, ":")
	port, addr, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || host == "" {
		return "", "", fmt.Errorf("resolve %q: want HOST:PORT:ADDR", spec)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("resolve %q: bad port %q", spec, port)
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"))
	if err != nil {
		return "", "", fmt.Errorf("resolve %q: %q is not an IP address", spec, addr)
	}
	return net.JoinHostPort(strings.ToLower(host), port), net.JoinHostPort(ip.String(), port), nil
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
