package pop

import "time"

// fastly_backend: read-only facts about static backends ([local_server.backends])
// and the dynamic ones the guest registered. Every call takes the backend
// name first and answers $inval for an unknown backend (as Viceroy does),
// except exists.
var fastlyBackend = hostModule{name: "fastly_backend", funcs: []hostFunc{
	{"exists", i32("backend_ptr", "backend_len", "exists_out"), backendExists},
	{"is_healthy", i32("backend_ptr", "backend_len", "health_out"), backendIsHealthy},
	{"is_dynamic", i32("backend_ptr", "backend_len", "is_dynamic_out"), backendIsDynamic},
	{"get_host", i32("backend_ptr", "backend_len", "value", "value_max_len", "nwritten_out"), backendGetHost},
	{"get_override_host", i32("backend_ptr", "backend_len", "value", "value_max_len", "nwritten_out"), backendGetOverrideHost},
	{"get_port", i32("backend_ptr", "backend_len", "port_out"), backendGetPort},
	{"get_connect_timeout_ms", i32("backend_ptr", "backend_len", "timeout_out"), backendGetConnectTimeout},
	{"get_first_byte_timeout_ms", i32("backend_ptr", "backend_len", "timeout_out"), backendGetFirstByteTimeout},
	{"get_between_bytes_timeout_ms", i32("backend_ptr", "backend_len", "timeout_out"), backendGetBetweenBytesTimeout},
	{"is_ssl", i32("backend_ptr", "backend_len", "is_ssl_out"), backendIsSSL},
	{"get_ssl_min_version", i32("backend_ptr", "backend_len", "version_out"), backendGetSSLMinVersion},
	{"get_ssl_max_version", i32("backend_ptr", "backend_len", "version_out"), backendGetSSLMaxVersion},
}}

// backendExists implements fastly_backend.exists(backend_ptr, backend_len,
// exists_out): writes 1 if a static or dynamic backend has the name, else
// 0.
//
// Status: $ok.
//
// Differs: no known difference.
func backendExists(c *call) status {
	name, ok := c.argBytes(0)
	if !ok {
		return stInval
	}
	_, found := c.inst.backend(string(name))
	if !c.putU32(c.u32(2), b2u(found)) {
		return stInval
	}
	return stOK
}

// backendIsHealthy implements fastly_backend.is_healthy(backend_ptr, backend_len, health_out):
// writes the backend's $backend_health: what the backend's health key in
// fastly.toml says (0 $unknown, 1 $healthy, 2 $unhealthy), $unknown
// without one and for dynamic backends.
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: the local POP runs no health checks; the manifest's key stands
// in for them, as in Viceroy.
func backendIsHealthy(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return backendHealth[be.cfg.Health], stOK })
}

// backendHealth maps fastlytoml's health values to $backend_health.
var backendHealth = map[string]uint32{"unknown": 0, "healthy": 1, "unhealthy": 2}

// backendIsDynamic implements fastly_backend.is_dynamic(backend_ptr, backend_len,
// is_dynamic_out): writes 1 for a backend registered with
// register_dynamic_backend, 0 for one from fastly.toml.
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendIsDynamic(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return b2u(be.dynamic), stOK })
}

// backendGetHost implements fastly_backend.get_host(backend_ptr, backend_len, value,
// value_max_len, nwritten_out): the host name (or address) of the
// backend's URL, without the port.
//
// Status: $ok; $inval for an unknown backend; $buflen if it does not fit.
//
// Differs: no known difference.
func backendGetHost(c *call) status {
	return backendString(c, func(be *backend) (string, bool) { return be.cfg.URL.Hostname(), true })
}

// backendGetOverrideHost implements fastly_backend.get_override_host(backend_ptr, backend_len,
// value, value_max_len, nwritten_out): the Host header the backend's
// requests carry instead of the request's own (override_host).
//
// Status: $ok; $none when the backend has no override host; $inval for an
// unknown backend; $buflen if it does not fit.
//
// Differs: no known difference.
func backendGetOverrideHost(c *call) status {
	return backendString(c, func(be *backend) (string, bool) {
		return be.cfg.OverrideHost, be.cfg.OverrideHost != ""
	})
}

// backendGetPort implements fastly_backend.get_port(backend_ptr, backend_len, port_out):
// the backend's port, from its URL or the scheme's default.
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendGetPort(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return uint32(be.cfg.Port()), stOK })
}

// backendGetConnectTimeout implements fastly_backend.get_connect_timeout_ms(backend_ptr,
// backend_len, timeout_out): the connect timeout in milliseconds
// (fastly.toml's connect_timeout, default 1 s as on Fastly).
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendGetConnectTimeout(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return durationMs(be.connectTimeout), stOK })
}

// backendGetFirstByteTimeout implements fastly_backend.get_first_byte_timeout_ms(backend_ptr,
// backend_len, timeout_out): the first-byte timeout in milliseconds
// (default 15 s as on Fastly).
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendGetFirstByteTimeout(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return durationMs(be.firstByteTimeout), stOK })
}

// backendGetBetweenBytesTimeout implements fastly_backend.get_between_bytes_timeout_ms(
// backend_ptr, backend_len, timeout_out): the between-bytes timeout in
// milliseconds (default 10 s as on Fastly).
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendGetBetweenBytesTimeout(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return durationMs(be.betweenBytesTimeout), stOK })
}

// backendIsSSL implements fastly_backend.is_ssl(backend_ptr, backend_len, is_ssl_out):
// writes 1 for an https backend, else 0.
//
// Status: $ok; $inval for an unknown backend.
//
// Differs: no known difference.
func backendIsSSL(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) { return b2u(be.isTLS()), stOK })
}

// backendGetSSLMinVersion implements fastly_backend.get_ssl_min_version(backend_ptr,
// backend_len, version_out): the lowest $tls_version the backend's
// connections accept.
//
// Status: $ok; $none for a backend that is not https (TLS versions only exist
// for TLS backends); $inval for an unknown backend.
//
// Differs: no known difference.
func backendGetSSLMinVersion(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) {
		if !be.isTLS() {
			return 0, stNone
		}
		return be.tlsMin, stOK
	})
}

// backendGetSSLMaxVersion implements fastly_backend.get_ssl_max_version(backend_ptr,
// backend_len, version_out): the highest $tls_version the backend's
// connections accept.
//
// Status: $ok; $none for a backend that is not https; $inval for an unknown
// backend.
//
// Differs: no known difference.
func backendGetSSLMaxVersion(c *call) status {
	return backendU32(c, func(be *backend) (uint32, status) {
		if !be.isTLS() {
			return 0, stNone
		}
		return be.tlsMax, stOK
	})
}

// backendByArg resolves the backend named in arguments 0-1: $inval for an
// unknown one.
func backendByArg(c *call) (*backend, status) {
	name, ok := c.argBytes(0)
	if !ok {
		return nil, stInval
	}
	be, ok := c.inst.backend(string(name))
	if !ok {
		return nil, stInval
	}
	return be, stOK
}

// backendU32 answers a (backend_ptr, backend_len, u32_out) query with what
// f says of the named backend.
func backendU32(c *call, f func(be *backend) (uint32, status)) status {
	be, st := backendByArg(c)
	if st != stOK {
		return st
	}
	v, st := f(be)
	if st != stOK {
		return st
	}
	if !c.putU32(c.u32(2), v) {
		return stInval
	}
	return stOK
}

// backendString answers a (backend_ptr, backend_len, buf, buf_len,
// nwritten_out) query with what f says of the named backend; false is
// $none.
func backendString(c *call, f func(be *backend) (string, bool)) status {
	be, st := backendByArg(c)
	if st != stOK {
		return st
	}
	v, ok := f(be)
	if !ok {
		return stNone
	}
	return writeOut(c, v, c.u32(2), c.u32(3), c.u32(4))
}

func durationMs(d time.Duration) uint32 { return uint32(d.Milliseconds()) }

func b2u(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}
