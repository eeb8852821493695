package pop

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// httpState is the per-instance state of the HTTP hostcalls that outlives
// a single hostcall: the dynamic backends the guest registered, how many
// backend requests the current execution has made, and the outstanding
// next_request promise.
type httpState struct {
	// dynamic backends live as long as the instance (Viceroy keeps them
	// per sandbox too): a ServeMany guest registers a backend once and
	// uses it for every request it serves.
	dynamic map[string]*backend

	sendsGen uint32 // the generation sends counts for
	sends    int

	promise uint32 // handle of the outstanding next_request promise, 0 if none
}

// Fastly's limits for the HTTP area (https://docs.fastly.com/products/compute-resource-limits
// and the network services limits).
const (
	// maxBackendSends is "maximum number of backend requests: 32 per
	// execution".
	maxBackendSends = 32
	// maxDynamicBackends is Fastly's "200 dynamic backends per service";
	// the local POP applies it per instance, where registrations live.
	maxDynamicBackends = 200
	// maxURLLen is Fastly's 8 KB URL limit: longer client URLs are
	// answered 414 before the guest runs, guests cannot set longer ones.
	maxURLLen = 8 << 10
	// maxHeaderSection is Fastly's request header size limit (69 KB):
	// a larger client header section is answered 431, and a guest
	// request with a larger one cannot be sent ($httpheadtoolarge).
	maxHeaderSection = 69 << 10
)

// $tls_version values.
const (
	tls10 = 0
	tls11 = 1
	tls12 = 2
	tls13 = 3
)

// backend resolves a backend name: static backends first, then the
// dynamic ones of this instance (names never collide, see
// register_dynamic_backend).
func (inst *instance) backend(name string) (*backend, bool) {
	if be, ok := inst.s.backends[name]; ok {
		return be, true
	}
	be, ok := inst.http.dynamic[name]
	return be, ok
}

// countSend counts one backend request of the current execution (the
// downstream request being served) and reports whether it is within
// Fastly's limit. Refused sends count too: an execution past the limit
// stays past it.
func (inst *instance) countSend() bool {
	h := &inst.http
	if h.sendsGen != inst.gen {
		h.sendsGen, h.sends = inst.gen, 0
	}
	h.sends++
	// A refused send is still counted by the hostcall error metric
	// ($limitexceeded is an error status).
	return h.sends <= maxBackendSends
}

// headTooLarge reports whether a guest request is beyond the limits
// Fastly applies to a request head.
func headTooLarge(ro *reqObj) bool {
	if len(ro.uri) > maxURLLen {
		return true
	}
	return headerSectionSize(ro.header) > maxHeaderSection
}

// headerSectionSize is the size of a header section on the wire:
// "name: value\r\n" per value.
func headerSectionSize(h headerList) int {
	n := 0
	for _, f := range h {
		for _, v := range f.vals {
			n += len(f.name) + len(v) + 4
		}
	}
	return n
}

// $backend_config_options bits.
const (
	beOptReserved            = 1 << 0
	beOptHostOverride        = 1 << 1
	beOptConnectTimeout      = 1 << 2
	beOptFirstByteTimeout    = 1 << 3
	beOptBetweenBytesTimeout = 1 << 4
	beOptUseSSL              = 1 << 5
	beOptSSLMinVersion       = 1 << 6
	beOptSSLMaxVersion       = 1 << 7
	beOptCertHostname        = 1 << 8
	beOptCACert              = 1 << 9
	beOptCiphers             = 1 << 10
	beOptSNIHostname         = 1 << 11
	beOptDontPool            = 1 << 12
	beOptClientCert          = 1 << 13
	beOptGRPC                = 1 << 14
	beOptKeepalive           = 1 << 15
	beOptKnown               = 1<<16 - 1
)

// Field offsets in $dynamic_backend_config: 23 fields of 4 bytes each.
const (
	dbcHostOverride     = 0  // ptr, len
	dbcConnectTimeout   = 8  // ms
	dbcFirstByteTimeout = 12 // ms
	dbcBetweenBytes     = 16 // ms
	dbcSSLMin           = 20
	dbcSSLMax           = 24
	dbcCertHostname     = 28 // ptr, len
	dbcCACert           = 36 // ptr, len
	dbcCiphers          = 44 // ptr, len
	dbcSNIHostname      = 52 // ptr, len
	dbcSize             = 92
)

// register_dynamic_backend(name_ptr, name_len, target_ptr, target_len,
// config_mask, config_ptr): defines a backend named name that sends to
// target (host[:port]) with the options the mask selects.
//
// Status codes follow Viceroy: a name already taken by a static or a
// dynamic backend is $error (fsthttp reports ErrBackendNameInUse); a
// malformed name, target or option (the reserved bit, unknown bits, empty
// or over-long strings, a bad TLS version) is $inval.
func reqRegisterDynamicBackend(c *call) status {
	inst := c.inst
	name, ok1 := c.argString(0)
	target, ok2 := c.argString(2)
	mask := c.u32(4)
	if !ok1 || !ok2 || name == "" || len(name) > 255 || mask&beOptReserved != 0 || mask&^beOptKnown != 0 {
		return stInval
	}
	cfg, ok := c.bytes(c.u32(5), dbcSize)
	if !ok {
		return stInval
	}
	field := func(off int) uint32 {
		return uint32(cfg[off]) | uint32(cfg[off+1])<<8 | uint32(cfg[off+2])<<16 | uint32(cfg[off+3])<<24
	}
	// str reads a (ptr, len) field; it must be non-empty and at most max
	// bytes, as in Viceroy.
	str := func(off int, max uint32) (string, bool) {
		n := field(off + 4)
		if n == 0 || n > max {
			return "", false
		}
		b, ok := c.bytes(field(off), n)
		return string(b), ok
	}

	host, port, err := net.SplitHostPort(target)
	if err != nil {
		host, port = target, ""
	}
	if host == "" || strings.ContainsAny(target, "/?#@ ") {
		return stInval
	}
	scheme := "http"
	if mask&beOptUseSSL != 0 {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: target}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	be := &backend{
		name:                name,
		cfg:                 fastlytoml.Backend{Name: name, URL: u, UseSNI: true},
		base:                u.Scheme + "://" + u.Host + "/",
		connectTimeout:      defaultConnectTimeout,
		firstByteTimeout:    defaultFirstByteTimeout,
		betweenBytesTimeout: defaultBetweenBytesTimeout,
		dynamic:             true,
		tlsMin:              tls12,
		tlsMax:              tls13,
	}
	if mask&beOptHostOverride != 0 {
		h, ok := str(dbcHostOverride, 1024)
		if !ok || !validHeaderValue([]byte(h)) {
			return stInval
		}
		be.cfg.OverrideHost = h
	}
	for _, t := range []struct {
		bit uint32
		off int
		dst *time.Duration
	}{
		{beOptConnectTimeout, dbcConnectTimeout, &be.connectTimeout},
		{beOptFirstByteTimeout, dbcFirstByteTimeout, &be.firstByteTimeout},
		{beOptBetweenBytesTimeout, dbcBetweenBytes, &be.betweenBytesTimeout},
	} {
		if mask&t.bit != 0 {
			*t.dst = time.Duration(field(t.off)) * time.Millisecond
		}
	}

	// TLS options only matter for TLS backends; they are still validated.
	tc := &tls.Config{}
	custom := false
	for _, v := range []struct {
		bit uint32
		off int
		dst *uint32
	}{
		{beOptSSLMinVersion, dbcSSLMin, &be.tlsMin},
		{beOptSSLMaxVersion, dbcSSLMax, &be.tlsMax},
	} {
		if mask&v.bit != 0 {
			if *v.dst = field(v.off); *v.dst > tls13 {
				return stInval
			}
			custom = true
		}
	}
	if be.tlsMin > be.tlsMax {
		return stInval
	}
	tc.MinVersion = tls.VersionTLS10 + uint16(be.tlsMin)
	tc.MaxVersion = tls.VersionTLS10 + uint16(be.tlsMax)
	if mask&beOptCertHostname != 0 {
		h, ok := str(dbcCertHostname, 1024)
		if !ok {
			return stInval
		}
		be.cfg.CertHost, tc.ServerName, custom = h, h, true
	}
	if mask&beOptSNIHostname != 0 {
		// An empty SNI hostname turns SNI off (Viceroy). Go always sends
		// the name it verifies, so a distinct SNI name cannot be honoured:
		// $inval, as in Viceroy.
		if field(dbcSNIHostname+4) == 0 {
			be.cfg.UseSNI = false
		} else {
			h, ok := str(dbcSNIHostname, 1024)
			if !ok || (tc.ServerName != "" && tc.ServerName != h) {
				return stInval
			}
			tc.ServerName, custom = h, true
		}
	}
	if mask&beOptCACert != 0 {
		pem, ok := str(dbcCACert, 64<<10)
		if !ok {
			return stInval
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(pem)) {
			return stInval
		}
		tc.RootCAs, custom = pool, true
	}
	if mask&beOptCiphers != 0 {
		// OpenSSL cipher strings have no Go equivalent; the string is
		// checked for presence and otherwise ignored.
		if _, ok := str(dbcCiphers, 1024); !ok {
			return stInval
		}
	}
	if mask&beOptClientCert != 0 {
		// Client certificates (mTLS to the backend) are not implemented.
		return stUnsupported
	}

	if _, taken := inst.backend(name); taken {
		return stError
	}
	if len(inst.http.dynamic) >= maxDynamicBackends {
		return stLimitExceeded
	}
	if (be.isTLS() && custom) || mask&beOptDontPool != 0 {
		t := inst.s.transport.Clone()
		if be.isTLS() {
			t.TLSClientConfig = tc
		}
		t.DisableKeepAlives = mask&beOptDontPool != 0
		be.transport = t
	}
	if inst.http.dynamic == nil {
		inst.http.dynamic = map[string]*backend{}
	}
	inst.http.dynamic[name] = be
	return stOK
}

// overLimits answers 414 or 431 for a client request beyond Fastly's URL
// or header section limits, which Fastly refuses before the guest runs; 0
// lets it through. The header section counts the Host header too.
func overLimits(r *http.Request) int {
	if len(r.RequestURI) > maxURLLen {
		return http.StatusRequestURITooLong
	}
	n := len("Host") + len(r.Host) + 4
	for k, vals := range r.Header {
		for _, v := range vals {
			n += len(k) + len(v) + 4
		}
	}
	if n > maxHeaderSection {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0
}
