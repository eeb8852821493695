package pop

// fastly_dictionary: edge dictionaries, the config stores' older API. The
// calls are fastly_config_store's (fastly_config_store.go); dictionary
// handles are kept apart from config store handles so that one cannot be
// used as the other.
var fastlyDictionary = hostModule{name: "fastly_dictionary", funcs: []hostFunc{
	{"open", i32("name_ptr", "name_len", "h_out"), openKV(true)},
	{"get", i32("h", "key_ptr", "key_len", "value", "value_max_len", "nwritten_out"), getKV(true)},
}}
