package pop

// fastly_abi: the handshake a guest makes before any other hostcall.
var fastlyABI = hostModule{name: "fastly_abi", funcs: []hostFunc{
	{"init", i64("abi_version"), abiInit},
}}

// abiInit implements fastly_abi.init(abi_version): the guest announces the
// ABI version it was built for. Every version is accepted; a function
// whose signature differs from this POP's is answered $unsupported at link
// time instead (abi.go).
//
// Status: $ok.
//
// Differs: no known difference.
func abiInit(c *call) status { return stOK }
