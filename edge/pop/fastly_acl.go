package pop

import (
	"encoding/json"
	"net/netip"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// fastly_acl: access control lists from [local_server.acls] (Viceroy's
// JSON files in the shape of Fastly's ACL API; fastlytoml reads them).
// Read-only and shared by all instances.
var fastlyACL = hostModule{name: "fastly_acl", funcs: []hostFunc{
	{"open", i32("name_ptr", "name_len", "acl_handle_out"), aclOpen},
	{"lookup", i32("acl", "ip_octets", "ip_len", "body_handle_out", "acl_error_out"), aclLookup},
}}

// aclObj is the object behind an ACL handle.
type aclObj struct{ acl *fastlytoml.ACL }

// $acl_error values (compute-at-edge.witx).
const (
	aclErrOK        = 1
	aclErrNoContent = 2
)

// aclOpen implements fastly_acl.open(name_ptr, name_len, acl_handle_out):
// a handle to the named ACL. Handles are sticky, one per name and
// instance, since guests open an ACL once and look addresses up in it on
// every request.
//
// Status: $ok; $none for a name that is not configured (the SDK's
// acl.ErrNotFound).
//
// Differs: no known difference from Viceroy.
func aclOpen(c *call) status {
	inst := c.inst
	name, ok := c.argString(0)
	if !ok {
		return stInval
	}
	h, ok := inst.acls[name]
	if !ok {
		acl, exists := inst.s.acls[name]
		if !exists {
			return stNone
		}
		h = inst.tab.add(&aclObj{acl}, inst.gen, true)
		if inst.acls == nil {
			inst.acls = map[string]uint32{}
		}
		inst.acls[name] = h
	}
	return c.putU32Status(c.u32(2), h)
}

// aclLookup implements fastly_acl.lookup(acl, ip_octets, ip_len,
// body_handle_out, acl_error_out): the entry of the ACL that matches the
// address (4 or 16 raw bytes): the longest matching prefix, the last of
// equally long ones. A match writes a new body holding {"prefix":
// "1.2.3.0/24", "action": "BLOCK"} and acl_error $ok; no match writes
// acl_error $no_content and no body.
//
// Status: $ok, match or not; $inval for an address that is not 4 or 16
// bytes.
//
// Differs: no known difference from Viceroy. Fastly's ACLs are edited
// through its API, not read from files.
func aclLookup(c *call) status {
	obj, ok := lookup[*aclObj](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	octets, ok := c.argBytes(1)
	if !ok {
		return stInval
	}
	var addr netip.Addr
	switch len(octets) {
	case 4:
		addr = netip.AddrFrom4([4]byte(octets))
	case 16:
		addr = netip.AddrFrom16([16]byte(octets))
	default:
		return stInval
	}
	bodyOut, errOut := c.u32(3), c.u32(4)
	e, found := obj.acl.Lookup(addr)
	if !found {
		return c.putU32Status(errOut, aclErrNoContent)
	}
	js, err := json.Marshal(struct {
		Prefix string `json:"prefix"`
		Action string `json:"action"`
	}{e.Prefix.String(), e.Action})
	if err != nil {
		return stError
	}
	if !c.putU32(errOut, aclErrOK) {
		return stInval
	}
	b := newBody()
	if err := b.write(c.inst.ctx, js, false); err != nil {
		return stError
	}
	return c.putHandle(bodyOut, c.inst.tab.add(b, c.inst.gen, false))
}
