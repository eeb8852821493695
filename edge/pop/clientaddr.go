package pop

import (
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/edgepixel/edgepixel/shared/clientip"
)

// Behind a load balancer. On Fastly the client's address is the address
// that connected to Fastly; a POP behind a load balancer or reverse proxy
// sees the proxy's address instead. The proxy can say who the client is,
// in a header (X-Forwarded-For, or RFC 7239's Forwarded) or with the PROXY
// protocol (HAProxy's, v1 text or v2 binary, before any HTTP: see
// proxyproto.go), and the POP believes it only from the proxies it is
// told to trust (Config.TrustedProxies): from anyone else a header is
// ignored, as when no proxy is trusted, and a PROXY header is not a
// request (net/http answers 400). Package clientip has the trust list,
// the header rule (the right-most address that is not a trusted proxy's)
// and the PROXY header's parser.
//
// The address found is the client's everywhere: downstream_client_ip_addr
// answers it (and so fsthttp's Request.RemoteAddr, which a module
// geolocates), the access log records it as "remote" (with the proxy as
// "peer"), and the per-address connection cap applies to it where a
// connection is one client's:
//
//   - a trusted proxy's own connections are exempt from the per-address
//     cap (MaxConnsPerAddr): they carry many clients; they count towards
//     MaxConns like any connection;
//   - with the PROXY protocol a connection is one client's, and once its
//     PROXY header is read the cap applies to the client's address;
//   - an address from a header is per request, on a connection that may
//     carry many clients' requests, so no connection cap can apply to it.
//
// The headers themselves reach the guest as they arrived.

// proxyTrust is clientip's trust list and what its header rule found,
// counted by result (edgepixel_pop_forwarded_total).
type proxyTrust struct {
	*clientip.Trust
	results [clientip.NumResults]atomic.Uint64
}

// newProxyTrust checks the configuration; nil when no proxy is trusted.
func newProxyTrust(prefixes []netip.Prefix, header string, proxyProtocol bool) (*proxyTrust, error) {
	t, err := clientip.NewTrust(prefixes, header, proxyProtocol)
	if t == nil || err != nil {
		return nil, err
	}
	return &proxyTrust{Trust: t}, nil
}

// apply sets r.RemoteAddr to the client's address if a trusted proxy
// said who it is in the header, counts the result, and returns the
// peer's address it replaced ("" if it did not).
func (t *proxyTrust) apply(r *http.Request) string {
	was, result := t.Apply(r)
	if result != clientip.NoResult {
		t.results[result].Add(1)
	}
	return was
}
