package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/edge/pop"
)

func TestClientInfoFlags(t *testing.T) {
	o, err := parseArgs([]string{"m.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := o.clientInfo.apply(pop.Config{})
	if c.GeoIPDatabases != nil || c.TrustedProxies != nil || c.ForwardedHeader != "" || c.ProxyProtocol || c.ERLMaxEntries != 0 {
		t.Errorf("defaults: %+v", c)
	}

	// The environment alone. The databases must exist (read at start).
	dir := t.TempDir()
	db := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	city, asn, dbipCity, dbipASN := db("City.mmdb"), db("ASN.mmdb"), db("dbip-city-lite.mmdb"), db("dbip-asn-lite.mmdb")
	e := env(map[string]string{
		"EDGEPIXEL_POP_GEOIP_DB":         city + ", " + asn,
		"EDGEPIXEL_POP_TRUSTED_PROXIES":  "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
		"EDGEPIXEL_POP_FORWARDED_HEADER": "Forwarded",
		"EDGEPIXEL_POP_PROXY_PROTOCOL":   "1",
		"EDGEPIXEL_POP_ERL_MAX_ENTRIES":  "5000",
	})
	o, err = parseArgs([]string{"m.wasm"}, e)
	if err != nil {
		t.Fatal(err)
	}
	c = o.clientInfo.apply(pop.Config{})
	wantProxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	if !slices.Equal(c.GeoIPDatabases, []string{city, asn}) || !slices.Equal(c.TrustedProxies, wantProxies) ||
		c.ForwardedHeader != "Forwarded" || !c.ProxyProtocol || c.ERLMaxEntries != 5000 {
		t.Errorf("environment: %+v", c)
	}

	// Flags win: the first use of a list flag replaces the environment's
	// list, later uses add to it.
	o, err = parseArgs([]string{"m.wasm", "--geoip-db", dbipCity, "--geoip-db=" + dbipASN,
		"--trusted-proxies", "172.16.0.0/12", "--trusted-proxies", "::1", "--forwarded-header", "x-forwarded-for",
		"--proxy-protocol=false", "--erl-max-entries", "10"}, e)
	if err != nil {
		t.Fatal(err)
	}
	c = o.clientInfo.apply(pop.Config{})
	wantProxies = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(c.GeoIPDatabases, []string{dbipCity, dbipASN}) || !slices.Equal(c.TrustedProxies, wantProxies) ||
		c.ForwardedHeader != "x-forwarded-for" || c.ProxyProtocol || c.ERLMaxEntries != 10 {
		t.Errorf("flags over the environment: %+v", c)
	}

	// Each refusal names what to fix.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--trusted-proxies", "10.0.0.0/33", "m.wasm"}, nil, "not an address or CIDR prefix"},
		{[]string{"--trusted-proxies", "lb.example", "m.wasm"}, nil, "not an address or CIDR prefix"},
		{[]string{"--trusted-proxies", "fe80::1%eth0", "m.wasm"}, nil, "not an address or CIDR prefix"},
		{nil, map[string]string{"EDGEPIXEL_POP_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, "EDGEPIXEL_POP_TRUSTED_PROXIES"},
		{[]string{"--forwarded-header", "X-Real-IP", "--trusted-proxies", "10.0.0.1", "m.wasm"}, nil, "want X-Forwarded-For, Forwarded or none"},
		{[]string{"--forwarded-header", "Forwarded", "m.wasm"}, nil, "give --trusted-proxies too"},
		{[]string{"--proxy-protocol", "m.wasm"}, nil, "needs the proxies it may come from"},
		{nil, map[string]string{"EDGEPIXEL_POP_PROXY_PROTOCOL": "maybe"}, "EDGEPIXEL_POP_PROXY_PROTOCOL"},
		{[]string{"--erl-max-entries", "-1", "m.wasm"}, nil, "--erl-max-entries"},
		// A database not there names the flag, or the variable that gave it.
		{[]string{"--geoip-db", filepath.Join(dir, "gone.mmdb"), "m.wasm"}, nil, "--geoip-db " + filepath.Join(dir, "gone.mmdb") + " does not exist"},
		{nil, map[string]string{"EDGEPIXEL_POP_GEOIP_DB": filepath.Join(dir, "gone.mmdb")}, "(--geoip-db is EDGEPIXEL_POP_GEOIP_DB's value"},
		{[]string{"--shutdown-timeout", "-5s", "m.wasm"}, nil, "--shutdown-timeout must not be negative"},
		{nil, map[string]string{"EDGEPIXEL_POP_ERL_MAX_ENTRIES": "many"}, "EDGEPIXEL_POP_ERL_MAX_ENTRIES"},
	} {
		args := tc.args
		if args == nil {
			args = []string{"m.wasm"}
		}
		_, err := parseArgs(args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %v: %v, want an error saying %q", tc.args, tc.env, err, tc.want)
		}
	}
}
