package pop

import "crypto/tls"

// TLS metadata of the client connection (fastly_http_downstream.downstream_tls_*).
//
// These matter for more than curiosity: compute-sdk-go's fsthttp asks for
// the protocol, cipher, SNI, ClientHello, JA3 and JA4 of every request whose
// URL is https and panics if any of them fails, so over TLS each must answer
// $ok. Protocol, cipher and SNI are real; the ClientHello, JA3 and JA4 need
// the raw handshake, which Go's crypto/tls does not expose, and are answered
// empty. Over cleartext they stay $none, as on Fastly for a non-TLS request
// (where the SDK never asks).

// downstreamTLSHostcalls are registered by hostcalls() over the dsAbsent
// defaults.
func downstreamTLSHostcalls() map[string]hostDef {
	return map[string]hostDef{
		"downstream_tls_protocol":            {i32s(4), dsTLSString(tlsProtocolName)},
		"downstream_tls_cipher_openssl_name": {i32s(4), dsTLSString(tlsCipherOpenSSLName)},
		"downstream_tls_client_servername":   {i32s(4), dsTLSString(func(cs *tls.ConnectionState) string { return cs.ServerName })},
		"downstream_tls_client_hello":        {i32s(4), dsTLSString(func(*tls.ConnectionState) string { return "" })},
		"downstream_tls_ja4":                 {i32s(4), dsTLSString(func(*tls.ConnectionState) string { return "" })},
		"downstream_tls_ja3_md5":             {i32s(3), dsTLSEmptyFixed},
	}
}

// dsTLSString answers (req, out, max_len, nwritten_out) from the request's
// TLS connection state.
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

// downstream_tls_ja3_md5(req, out[16], nwritten_out): no JA3 locally, so
// zero bytes over TLS.
func dsTLSEmptyFixed(c *call) status {
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
