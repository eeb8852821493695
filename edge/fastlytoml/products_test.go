package fastlytoml

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const productsSample = `
manifest_version = 3
[local_server]
acls.inline = "acl.json"
acls.table = { file = "acl.json" }

[local_server.device_detection]
format = "inline-toml"
[local_server.device_detection.user_agents."Mozilla/5.0 (iPhone)"]
device = {name = "iPhone", brand = "Apple", is_mobile = true}

[local_server.shielding_sites]
"pdx-or-us" = "Local"
"bfi-wa-us".unencrypted = "http://localhost"
"bfi-wa-us".encrypted = "https://localhost"
`

const aclSample = `{"entries": [
  {"op": "update", "prefix": "1.2.3.0/24", "action": "block"},
  {"op": "create", "prefix": "1.2.3.4/32", "action": "ALLOW"},
  {"op": "create", "prefix": "10.9.8.7/8", "action": "FIRST"},
  {"op": "create", "prefix": "10.0.0.0/8", "action": "LAST"},
  {"op": "create", "prefix": "2001:db8::/32", "action": "BLOCK"}
]}`

func TestProducts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acl.json"), []byte(aclSample), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Parse([]byte(productsSample), dir)
	if err != nil {
		t.Fatal(err)
	}
	ls := m.LocalServer
	if len(ls.ACLs) != 2 {
		t.Fatalf("ACLs %v", ls.ACLs)
	}
	acl := ls.ACLs["table"]
	for _, tc := range []struct {
		addr, prefix, action string
	}{
		{"1.2.3.4", "1.2.3.4/32", "ALLOW"}, // the longest prefix wins
		{"1.2.3.5", "1.2.3.0/24", "BLOCK"}, // actions ALLOW/BLOCK upper-cased
		{"10.1.1.1", "10.0.0.0/8", "LAST"}, // equal length: the last entry; prefixes masked
		{"::ffff:1.2.3.9", "1.2.3.0/24", "BLOCK"},
		{"2001:db8::1", "2001:db8::/32", "BLOCK"},
		{"1.1.1.1", "", ""},
	} {
		e, ok := acl.Lookup(netip.MustParseAddr(tc.addr))
		if ok != (tc.prefix != "") || (ok && (e.Prefix.String() != tc.prefix || e.Action != tc.action)) {
			t.Errorf("Lookup(%s) = %v %v, want %s %s", tc.addr, e, ok, tc.prefix, tc.action)
		}
	}
	dev := ls.DeviceDetection["Mozilla/5.0 (iPhone)"]["device"].(map[string]any)
	if dev["name"] != "iPhone" || dev["is_mobile"] != true {
		t.Errorf("device detection %v", ls.DeviceDetection)
	}
	if s := ls.ShieldingSites["pdx-or-us"]; !s.Local {
		t.Errorf("pdx-or-us %+v", s)
	}
	if s := ls.ShieldingSites["bfi-wa-us"]; s.Local || s.Unencrypted != "http://localhost" || s.Encrypted != "https://localhost" {
		t.Errorf("bfi-wa-us %+v", s)
	}
}

func TestProductErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"entries": [{"prefix": "1.2.3", "action": "BLOCK"}]}`), 0o644)
	for _, tc := range []struct{ toml, want string }{
		{`local_server.acls.x = "missing.json"`, "local_server.acls.x"},
		{`local_server.acls.x = "bad.json"`, "entries[0]"},
		{`local_server.acls.x = 3`, "want a file path"},
		{`local_server.shielding_sites.x = "Remote"`, `only string value is "Local"`},
		{`local_server.shielding_sites.x = {unencrypted = "http://a"}`, "encrypted is required"},
		{`local_server.device_detection = {format = "xml"}`, "local_server.device_detection: format"},
	} {
		_, err := Parse([]byte(tc.toml), dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", tc.toml, err, tc.want)
		}
	}
}
