package pop

// fastly_shielding: which shielding site this POP is, from
// [local_server.shielding_sites] (Viceroy's format). Sending through a
// shield (backend_for_shield) is not listed and answers $unsupported: the
// POP has no shield POPs to send to.
var fastlyShielding = hostModule{name: "fastly_shielding", funcs: []hostFunc{
	{"shield_info", i32("name_ptr", "name_len", "info_block", "info_block_max_len", "nwritten_out"), shieldInfo},
}}

// shieldInfo implements fastly_shielding.shield_info(name_ptr, name_len,
// info_block, info_block_max_len, nwritten_out): the info block the SDK
// decodes: one byte, 1 if this POP is the named site, then the site's
// unencrypted and encrypted URLs, each ended by a NUL byte (both empty
// for the local site).
//
// Status: $ok; $inval for a site that is not configured, as in Viceroy;
// $buflen if the block does not fit, with its length in nwritten_out.
//
// Differs: Fastly knows its own shielding sites; here only the configured
// ones exist.
func shieldInfo(c *call) status {
	name, ok := c.argString(0)
	if !ok {
		return stInval
	}
	site, ok := c.inst.s.shields[name]
	if !ok {
		return stInval
	}
	info := make([]byte, 0, 3+len(site.Unencrypted)+len(site.Encrypted))
	if site.Local {
		info = append(info, 1)
	} else {
		info = append(info, 0)
	}
	info = append(info, site.Unencrypted...)
	info = append(info, 0)
	info = append(info, site.Encrypted...)
	info = append(info, 0)
	return writeOut(c, info, c.u32(2), c.u32(3), c.u32(4))
}
