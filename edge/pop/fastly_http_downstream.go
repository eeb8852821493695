package pop

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"time"
)

// fastly_http_downstream: the client requests an instance serves (the
// next_request calls that make ServeMany work) and what the POP knows
// about each: addresses, request id, original headers, TLS details.
//
// Metadata the local POP does not have (fingerprints, compliance region,
// client certificates) is answered $none, which is what Fastly reports for
// an absent value. No request is analysed for bots here, and the bot
// detection calls say so. The residential-proxy calls of newer SDKs are
// not listed and get $unsupported.
var fastlyHTTPDownstream = hostModule{name: "fastly_http_downstream", funcs: []hostFunc{
	{"next_request", i32("options_mask", "options", "promise_out"), dsNextRequest},
	{"next_request_wait", i32("handle", "req_handle_out", "body_handle_out"), dsNextRequestWait},
	{"next_request_abandon", i32("handle"), dsNextRequestAbandon},
	{"downstream_client_ip_addr", i32("req", "addr_octets_out", "nwritten_out"), downstreamIP(clientAddr, true)},
	{"downstream_server_ip_addr", i32("req", "addr_octets_out", "nwritten_out"), downstreamIP(serverAddr, true)},
	{"downstream_client_request_id", i32("req", "reqid_out", "reqid_max_len", "nwritten_out"), dsRequestID},
	{"downstream_original_header_names", i32("req", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), dsOriginalHeaderNames},
	{"downstream_original_header_count", i32("req", "count_out"), dsOriginalHeaderCount},
	{"downstream_tls_protocol", i32("req", "protocol_out", "protocol_max_len", "nwritten_out"), dsTLSString(tlsProtocolName)},
	{"downstream_tls_cipher_openssl_name", i32("req", "cipher_out", "cipher_max_len", "nwritten_out"), dsTLSString(tlsCipherOpenSSLName)},
	{"downstream_tls_client_servername", i32("req", "tls_sni_out", "tls_sni_max_len", "nwritten_out"), dsTLSString(tlsServerName)},
	{"downstream_tls_client_hello", i32("req", "chello_out", "chello_max_len", "nwritten_out"), dsTLSString(tlsUnknown)},
	{"downstream_tls_ja4", i32("req", "ja4_out", "ja4_max_len", "nwritten_out"), dsTLSString(tlsUnknown)},
	{"downstream_tls_ja3_md5", i32("req", "cja3_md5_out", "nwritten_out"), dsTLSJA3MD5},
	{"downstream_tls_raw_client_certificate", i32("req", "raw_client_cert_out", "raw_client_cert_max_len", "nwritten_out"), dsAbsent},
	{"downstream_tls_client_cert_verify_result", i32("req", "client_cert_verify_result_out"), dsAbsent},
	{"downstream_client_h2_fingerprint", i32("req", "h2fp_out", "h2fp_max_len", "nwritten_out"), dsAbsent},
	{"downstream_client_oh_fingerprint", i32("req", "ohfp_out", "ohfp_max_len", "nwritten_out"), dsAbsent},
	{"downstream_compliance_region", i32("req", "region_out", "region_max_len", "nwritten_out"), dsAbsent},
	{"downstream_client_ddos_detected", i32("req", "ddos_detected_out"), dsFalse},
	{"fastly_key_is_valid", i32("req", "is_valid_out"), dsFalse},
	{"downstream_bot_analyzed", i32("req", "bot_analyzed_out"), dsBotNotAnalyzed},
	{"downstream_bot_detected", i32("req", "bot_detected_out"), dsBotNotAnalyzed},
	{"downstream_bot_verified", i32("req", "bot_verified_out"), dsBotNotAnalyzed},
	{"downstream_bot_name", i32("req", "bot_name_out", "bot_name_max_len", "nwritten_out"), dsBotAbsent},
	{"downstream_bot_category", i32("req", "bot_category_out", "bot_category_max_len", "nwritten_out"), dsBotAbsent},
	{"downstream_bot_category_kind", i32("req", "bot_category_kind_out"), dsBotAbsent},
}}

// promise is the object behind a request-promise handle.
type promise struct{ timeout time.Duration }

// dsNextRequest implements fastly_http_downstream.next_request(
// options_mask, options, promise_out): a promise of the instance's next
// client request. Option bit 1 is a timeout in milliseconds (u64 at
// options), capped at an hour; without it the wait has no end.
//
// Status: $ok; $inval for an unknown option bit; $limitexceeded while
// another promise is outstanding (an instance may have one: it must be
// waited on or abandoned first).
//
// Differs: no known difference from Viceroy.
func dsNextRequest(c *call) status {
	inst := c.inst
	if h := inst.http.promise; h != 0 {
		if _, ok := lookup[*promise](&inst.tab, h); ok {
			return stLimitExceeded
		}
		inst.http.promise = 0
	}
	mask := c.u32(0)
	p := &promise{timeout: -1}
	if mask&^3 != 0 {
		return stInval
	}
	if mask&2 != 0 {
		b, ok := c.bytes(c.u32(1), 8)
		if !ok {
			return stInval
		}
		ms := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if ms > uint64(time.Hour/time.Millisecond) {
			ms = uint64(time.Hour / time.Millisecond)
		}
		p.timeout = time.Duration(ms) * time.Millisecond
	}
	h := inst.tab.add(p, inst.gen, false)
	if st := c.putHandle(c.u32(2), h); st != stOK {
		return st
	}
	inst.http.promise = h
	return stOK
}

// dsNextRequestWait implements fastly_http_downstream.next_request_wait(
// handle, req_handle_out, body_handle_out): consumes the promise, closes
// out the current request (a client still waiting gets a 500) and blocks
// until the pool hands the instance its next client request.
//
// Status: $ok with the handles of the request and its body; $none when no
// request comes: the promise's timeout passed, the instance sat idle above
// the warm pool size, it served its request with --fresh-instance, a
// reload replaced its module, it breached a limit, or the POP shuts down.
// $none ends fsthttp.ServeMany, so the guest runs the code after its serve
// loop.
//
// Differs: on Fastly the platform decides when an instance takes another
// request; here the pool does (pool.go).
func dsNextRequestWait(c *call) status {
	inst := c.inst
	p, ok := take[*promise](&inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	inst.http.promise = 0
	if _, ok := c.bytes(c.u32(1), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(2), 4); !ok {
		return stInval
	}
	inst.endRequest(false)
	ds, ok := inst.waitRequest(p.timeout)
	if !ok {
		return stNone
	}
	inst.bind(ds)
	c.putU32(c.u32(1), ds.reqH)
	c.putU32(c.u32(2), ds.bodyH)
	return stOK
}

// dsNextRequestAbandon implements fastly_http_downstream.next_request_abandon(
// handle): drops an outstanding promise.
//
// Status: $ok.
//
// Differs: no known difference.
func dsNextRequestAbandon(c *call) status {
	if _, ok := take[*promise](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	c.inst.http.promise = 0
	return stOK
}

// dsOf resolves a request handle that must be a client request: $badf for
// a bad handle, $none for a request the guest made.
func dsOf(c *call, h uint32) (*downstream, status) {
	r, ok := c.inst.getReq(h)
	if !ok {
		return nil, stBadf
	}
	if r.ds == nil {
		return nil, stNone
	}
	return r.ds, stOK
}

// clientAddr is the client's address of r.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr(), true
	}
	a, err := netip.ParseAddr(r.RemoteAddr)
	return a, err == nil
}

// serverAddr is the local address r arrived on.
func serverAddr(r *http.Request) (netip.Addr, bool) {
	switch a := r.Context().Value(http.LocalAddrContextKey).(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr(), true
	case net.Addr:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// downstreamIP implements fastly_http_downstream.downstream_client_ip_addr
// and downstream_server_ip_addr(req, addr_octets_out, nwritten_out), and
// the handle-less fastly_http_req forms (addr_octets_out, nwritten_out),
// which ask about the current client request: the client's address, or
// the local address the request arrived on, as 4 or 16 octets (putIP).
//
// Status: $ok; $none for a request the guest made, or when there is no
// current client request (handle-less form) or no address.
//
// Differs: no known difference.
func downstreamIP(addrOf func(*http.Request) (netip.Addr, bool), withHandle bool) hostFn {
	return func(c *call) status {
		ds, arg := c.inst.cur, 0
		if withHandle {
			var st status
			if ds, st = dsOf(c, c.u32(0)); st != stOK {
				return st
			}
			arg = 1
		}
		if ds == nil {
			return stNone
		}
		a, ok := addrOf(ds.r)
		if !ok {
			return stNone
		}
		return putIP(c, a, c.u32(arg), c.u32(arg+1))
	}
}

// dsRequestID implements fastly_http_downstream.downstream_client_request_id(
// req, reqid_out, reqid_max_len, nwritten_out): 32 hex digits, unique per
// client request of this POP process (the access log's request_id). The
// first request an instance serves has the instance's sandbox id (its
// FASTLY_TRACE_ID), as on Fastly; later ones get new ids (bind, in
// downstream.go).
//
// Status: $ok; $none for a request the guest made; $buflen if the buffer
// is shorter than 32.
//
// Differs: ids count up from 1 in each POP process, from one sequence
// for sandboxes and requests (Run's are 0, as in Viceroy's run); Fastly's
// are unique across its network.
func dsRequestID(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	return writeOut(c, requestID(ds.id), c.u32(1), c.u32(2), c.u32(3))
}

// originalNames are the client's header names, Host first, the rest
// sorted, as they arrived (before the guest changed anything).
func (ds *downstream) originalNames() []string {
	if !ds.origNamesSet {
		ds.origNamesSet = true
		names := make([]string, 0, len(ds.r.Header)+1)
		if ds.r.Host != "" {
			names = append(names, "host")
		}
		for k := range ds.r.Header {
			names = append(names, k)
		}
		sort.Strings(names[min(1, len(names)):])
		ds.origNames = names
	}
	return ds.origNames
}

// dsOriginalHeaderNames implements
// fastly_http_downstream.downstream_original_header_names(req, buf, buf_len,
// cursor, ending_cursor_out, nwritten_out): the client request's header
// names as it arrived, lower case, in the multi-value protocol (writeMulti).
//
// Status: $ok; $none for a request the guest made; $buflen as
// header_names_get.
//
// Differs: Fastly keeps the client's order; net/http does not, so Host
// comes first and the rest are sorted.
func dsOriginalHeaderNames(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	names := ds.originalNames()
	return writeMulti(c, len(names), func(i int) string { return names[i] }, true,
		c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5))
}

// dsOriginalHeaderCount implements
// fastly_http_downstream.downstream_original_header_count(req, count_out):
// how many header names the client request arrived with.
//
// Status: $ok; $none for a request the guest made.
//
// Differs: no known difference.
func dsOriginalHeaderCount(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	n := len(ds.r.Header)
	if ds.r.Host != "" {
		n++
	}
	if !c.putU32(c.u32(1), uint32(n)) {
		return stInval
	}
	return stOK
}

// dsAbsent implements the fastly_http_downstream calls for metadata the
// local POP does not have: downstream_tls_raw_client_certificate,
// downstream_client_h2_fingerprint, downstream_client_oh_fingerprint and
// downstream_compliance_region (req, out, max_len, nwritten_out), and
// downstream_tls_client_cert_verify_result (req,
// client_cert_verify_result_out). The handle
// is checked, nothing is written.
//
// Status: $none, what Fastly reports for an absent value; $none also for
// a request the guest made.
//
// Differs: Fastly has these values.
func dsAbsent(c *call) status {
	_, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	return stNone
}

// dsFalse implements fastly_http_downstream.downstream_client_ddos_detected
// and fastly_key_is_valid(req, out): writes 0 (false) as a u32.
//
// Status: $ok; $none for a request the guest made.
//
// Differs: Fastly evaluates them; locally there is no DDoS detection and
// no Fastly key.
func dsFalse(c *call) status {
	_, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	if !c.putU32(c.u32(1), 0) {
		return stInval
	}
	return stOK
}

// dsBotNotAnalyzed implements fastly_http_downstream.downstream_bot_analyzed,
// downstream_bot_detected and downstream_bot_verified(req, out): writes 0
// (false). "Not analysed" is the true answer here, and fsthttp then
// reports an empty BotDetectionResult.
//
// Status: $ok; $none for a request the guest made.
//
// Differs: Fastly analyses requests for bots when the service has Bot
// Management; the local POP has none, as a service without it.
func dsBotNotAnalyzed(c *call) status { return dsFalse(c) }

// dsBotAbsent implements fastly_http_downstream.downstream_bot_name and
// downstream_bot_category (req, out, max_len, nwritten_out), and
// downstream_bot_category_kind (req, bot_category_kind_out): for a request
// that was not analysed there is nothing to report. The handle is checked,
// nothing is written.
//
// Status: $none.
//
// Differs: as dsBotNotAnalyzed.
func dsBotAbsent(c *call) status { return dsAbsent(c) }

// TLS metadata of the client connection (downstream_tls_*).
//
// These matter for more than curiosity: compute-sdk-go's fsthttp asks for
// the protocol, cipher, SNI, ClientHello, JA3 and JA4 of every request whose
// URL is https and panics if any of them fails, so over TLS each must answer
// $ok. Protocol, cipher and SNI are real; the ClientHello, JA3 and JA4 need
// the raw handshake, which Go's crypto/tls does not expose, and are answered
// empty. Over cleartext they are $none, as on Fastly for a non-TLS request
// (where the SDK never asks).

// dsTLSString implements fastly_http_downstream.downstream_tls_protocol,
// downstream_tls_cipher_openssl_name, downstream_tls_client_servername,
// downstream_tls_client_hello and downstream_tls_ja4(req, out, max_len,
// nwritten_out), with get picking the value from the connection state.
//
// Status: $ok over TLS; $none over cleartext or for a request the guest
// made; $buflen if the value does not fit.
//
// Differs: the ClientHello and JA4 are empty (see above).
func dsTLSString(get func(*tls.ConnectionState) string) hostFn {
	return func(c *call) status {
		ds, st := dsOf(c, c.u32(0))
		if st != stOK {
			return st
		}
		if ds.r.TLS == nil {
			return stNone
		}
		return writeOut(c, get(ds.r.TLS), c.u32(1), c.u32(2), c.u32(3))
	}
}

func tlsServerName(cs *tls.ConnectionState) string { return cs.ServerName }

// tlsUnknown is the value of what Go's crypto/tls does not expose.
func tlsUnknown(*tls.ConnectionState) string { return "" }

// dsTLSJA3MD5 implements fastly_http_downstream.downstream_tls_ja3_md5(req,
// cja3_md5_out, nwritten_out): the JA3 fingerprint's 16 bytes.
//
// Status: $ok over TLS, with no bytes; $none over cleartext or for a
// request the guest made.
//
// Differs: no JA3 locally (see above), so zero bytes.
func dsTLSJA3MD5(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	if ds.r.TLS == nil {
		return stNone
	}
	if !c.putU32(c.u32(2), 0) {
		return stInval
	}
	return stOK
}

// tlsProtocolName uses OpenSSL's spelling, which is what Fastly reports
// (tls.client.protocol): "TLSv1.2", "TLSv1.3".
func tlsProtocolName(cs *tls.ConnectionState) string {
	switch cs.Version {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(cs.Version)
}

// tlsCipherOpenSSLName maps Go's (IANA) cipher suite names to OpenSSL's,
// as Fastly reports them (tls.client.cipher). TLS 1.3 suites have the same
// name in both.
func tlsCipherOpenSSLName(cs *tls.ConnectionState) string {
	if n, ok := opensslCipherNames[cs.CipherSuite]; ok {
		return n
	}
	return tls.CipherSuiteName(cs.CipherSuite)
}

var opensslCipherNames = map[uint16]string{
	tls.TLS_RSA_WITH_RC4_128_SHA:                      "RC4-SHA",
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:                 "DES-CBC3-SHA",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:                  "AES128-SHA",
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:                  "AES256-SHA",
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256:               "AES128-SHA256",
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:               "AES128-GCM-SHA256",
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:               "AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA:              "ECDHE-ECDSA-RC4-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          "ECDHE-ECDSA-AES128-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          "ECDHE-ECDSA-AES256-SHA",
	tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA:                "ECDHE-RSA-RC4-SHA",
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:           "ECDHE-RSA-DES-CBC3-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:            "ECDHE-RSA-AES128-SHA",
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:            "ECDHE-RSA-AES256-SHA",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:       "ECDHE-ECDSA-AES128-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:         "ECDHE-RSA-AES128-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
}
