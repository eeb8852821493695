package pop

import "net/netip"

// fastly_geo: geolocation from [local_server.geolocation] (geo.go).
var fastlyGeo = hostModule{name: "fastly_geo", funcs: []hostFunc{
	{"lookup", i32("addr_octets", "addr_len", "buf", "buf_len", "nwritten_out"), geoLookup},
}}

// geoLookup implements fastly_geo.lookup(addr_octets, addr_len, buf,
// buf_len, nwritten_out): the JSON geolocation record of the address
// (4 or 16 raw bytes). An address without a record gets an empty answer,
// which the SDK turns into a zero geo.Geo; loopback addresses get
// Viceroy's default record unless the manifest turns that off.
//
// Status: $ok; $inval for an address that is not 4 or 16 bytes; $buflen
// if the record does not fit, with its length in nwritten_out.
//
// Differs: no known difference from Viceroy (older Viceroys answered
// $none for an address without a record).
func geoLookup(c *call) status {
	octets, ok := c.argBytes(0)
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
	return writeOut(c, c.inst.s.geo.lookup(addr), c.u32(2), c.u32(3), c.u32(4))
}
