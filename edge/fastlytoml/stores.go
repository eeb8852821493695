package fastlytoml

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// Fastly's limits for config store and dictionary items, in characters;
// Viceroy refuses manifests that exceed them, so code that works locally
// does not fail when deployed.
const (
	MaxConfigKeyChars   = 256
	MaxConfigValueChars = 8000
)

// rawStore is a [local_server.config_stores.NAME] or
// [local_server.dictionaries.NAME] table.
type rawStore struct {
	Format   string         `toml:"format"`
	File     string         `toml:"file"`
	Contents map[string]any `toml:"contents"`
}

func (rs rawStore) resolve(dir string) (map[string]string, error) {
	format := rs.Format
	if format == "" {
		// Viceroy requires a format; accept the obvious cases anyway.
		switch {
		case rs.Contents != nil:
			format = "inline-toml"
		case rs.File != "":
			format = "json"
		}
	}
	var kv map[string]string
	switch format {
	case "inline-toml":
		if rs.Contents == nil {
			return nil, fmt.Errorf(`format "inline-toml" needs a contents table`)
		}
		kv = make(map[string]string, len(rs.Contents))
		for _, k := range sortedKeys(rs.Contents) {
			s, ok := rs.Contents[k].(string)
			if t, isTable := rs.Contents[k].(map[string]any); isTable && len(t) > 0 {
				// TOML reads the dots of a bare key as tables: a
				// tester's site.news = "..." (the README's key) came
				// here as the table site.
				key := k
				for t != nil {
					sub := sortedKeys(t)[0]
					key += "." + sub
					t, _ = t[sub].(map[string]any)
				}
				return nil, fmt.Errorf("contents.%s: value must be a string, not a table: quote a key with dots, \"%s\" = \"...\" (TOML reads %s = ... as tables)", k, key, key)
			}
			if !ok {
				return nil, fmt.Errorf("contents.%s: value must be a string, not %s", k, tomlType(rs.Contents[k]))
			}
			kv[k] = s
		}
		if err := checkConfigLimits(kv); err != nil {
			return nil, fmt.Errorf("contents.%w", err)
		}
	case "json":
		if rs.File == "" {
			return nil, fmt.Errorf(`format "json" needs a file`)
		}
		var err error
		if kv, err = readJSONStrings(resolvePath(dir, rs.File), `a JSON object of keys to string values, e.g. {"key": "value"}`); err != nil {
			return nil, err
		}
		if err := checkConfigLimits(kv); err != nil {
			return nil, fmt.Errorf("%s: %w", rs.File, err)
		}
	default:
		return nil, fmt.Errorf("unsupported format %q (want inline-toml or json)", rs.Format)
	}
	return kv, nil
}

func checkConfigLimits(kv map[string]string) error {
	for _, k := range sortedKeys(kv) {
		if n := utf8.RuneCountInString(k); n > MaxConfigKeyChars {
			return fmt.Errorf("%s: key is %d characters long; Fastly allows %d", k, n, MaxConfigKeyChars)
		}
		if n := utf8.RuneCountInString(kv[k]); n > MaxConfigValueChars {
			return fmt.Errorf("%s: value is %d characters long; Fastly allows %d", k, n, MaxConfigValueChars)
		}
	}
	return nil
}

// readJSONStrings reads a JSON object whose values are all strings; want
// says what it holds, for a file that does not exist (readFile).
func readJSONStrings(path, want string) (map[string]string, error) {
	obj, err := readJSONObject(path, want)
	if err != nil {
		return nil, err
	}
	kv := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		var s string
		if err := json.Unmarshal(obj[k], &s); err != nil {
			return nil, fmt.Errorf("%s: key %q: value must be a string", path, k)
		}
		kv[k] = s
	}
	return kv, nil
}

// readJSONObject reads a file holding one JSON object, leaving its values
// for the caller to interpret; want says what it holds, for a file that
// does not exist (readFile).
func readJSONObject(path, want string) (map[string]json.RawMessage, error) {
	data, err := readFile(path, want)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, fmt.Errorf("%s: must hold a JSON object: %v", path, err)
	}
	return obj, nil
}

// MissingFileError is the error for a file the manifest names that does
// not exist (a store's data not created yet): it says what the file must
// hold, so a user can create it. It matches fs.ErrNotExist.
type MissingFileError struct {
	Path string // as opened: relative paths resolved against the manifest's directory
	Want string // what the file holds, e.g. "a JSON object of ..."
	// Secret is the key of the secret whose value the file is; "" for
	// other files.
	Secret string
	Err    error // os.ReadFile's
}

func (e *MissingFileError) Error() string {
	return fmt.Sprintf("file %s does not exist: create it holding %s, or name one that does", e.Path, e.Want)
}

func (e *MissingFileError) Unwrap() error { return e.Err }

// readFile reads a file the manifest names, holding what want says; one
// that does not exist is a *MissingFileError.
func readFile(path, want string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &MissingFileError{Path: path, Want: want, Err: err}
	}
	return data, err
}

// --- secret stores ---

// resolveSecretStore reads one secret store in either of Viceroy's forms:
// an array of {key, data|file|env} tables, or a table {format = "json",
// file = "..."} naming a JSON object of secret names to values.
func resolveSecretStore(name string, v any, dir string) (map[string][]byte, error) {
	if !validSecretName(name) {
		return nil, fmt.Errorf("invalid store name %q: %s", name, secretNameRule)
	}
	st := map[string][]byte{}
	if t, ok := v.(map[string]any); ok {
		file, err := fileFormatTable(t)
		if err != nil {
			return nil, err
		}
		kv, err := readJSONStrings(resolvePath(dir, file), `a JSON object of secret names to values, e.g. {"name": "value"}`)
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(kv) {
			if !validSecretName(k) {
				return nil, fmt.Errorf("%s: invalid secret name %q: %s", file, k, secretNameRule)
			}
			st[k] = []byte(kv[k])
		}
		return st, nil
	}
	items, ok := asArray(v)
	if !ok {
		return nil, fmt.Errorf("want an array of {key, data|file|env} tables or a {format, file} table, not %s", tomlType(v))
	}
	for i, item := range items {
		t, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("[%d]: want a table, not %s", i, tomlType(item))
		}
		key, val, err := resolveSecret(t, dir)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		if _, dup := st[key]; dup {
			return nil, fmt.Errorf("[%d]: secret %q is defined twice", i, key)
		}
		st[key] = val
	}
	return st, nil
}

const secretNameRule = "1-255 letters, digits, '-', '_' or '.'"

// CheckSecretName says why name is not a valid secret (or secret store)
// name, for a tool that makes entries from names it did not choose, such
// as files in a directory.
func CheckSecretName(name string) error {
	if validSecretName(name) {
		return nil
	}
	return fmt.Errorf("invalid secret name %q: %s", name, secretNameRule)
}

// validSecretName is Fastly's rule for secret store and secret names.
func validSecretName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func resolveSecret(t map[string]any, dir string) (string, []byte, error) {
	key, err := stringField(t, "key", true)
	if err != nil {
		return "", nil, err
	}
	if !validSecretName(key) {
		return "", nil, fmt.Errorf("invalid secret name %q: %s", key, secretNameRule)
	}
	n := 0
	for _, f := range []string{"data", "file", "env"} {
		if _, ok := t[f]; ok {
			n++
		}
	}
	if n != 1 {
		return "", nil, fmt.Errorf("secret %q needs exactly one of data, file or env", key)
	}
	for _, f := range []string{"data", "file", "env"} {
		if _, ok := t[f]; !ok {
			continue
		}
		s, err := stringField(t, f, true)
		if err != nil {
			return "", nil, fmt.Errorf("secret %q: %w", key, err)
		}
		switch f {
		case "data":
			return key, []byte(s), nil
		case "file":
			data, err := readFile(resolvePath(dir, s), "the secret's value (the file's bytes, as they are)")
			if mf := (*MissingFileError)(nil); errors.As(err, &mf) {
				mf.Secret = key
			}
			if err != nil {
				return "", nil, fmt.Errorf("secret %q: %w", key, err)
			}
			return key, data, nil
		default:
			// Viceroy uses "" for an unset variable; failing at startup
			// catches the forgotten export before a request needs it.
			v, ok := os.LookupEnv(s)
			if !ok {
				return "", nil, fmt.Errorf("secret %q: environment variable %s is not set", key, s)
			}
			return key, []byte(v), nil
		}
	}
	panic("unreachable")
}

// fileFormatTable checks a {format = "json", file = "..."} table and
// returns the file.
func fileFormatTable(t map[string]any) (string, error) {
	format, err := stringField(t, "format", false)
	if err != nil {
		return "", err
	}
	file, err := stringField(t, "file", false)
	if err != nil {
		return "", err
	}
	switch {
	case format == "" && file == "":
		return "", fmt.Errorf(`a table here needs format = "json" and a file`)
	case format == "" || file == "":
		return "", fmt.Errorf(`format and file must be set together`)
	case format != "json":
		return "", fmt.Errorf("unsupported format %q (want json)", format)
	}
	return file, nil
}

// stringField returns t[key] if it is a string ("" if absent and not
// required).
func stringField(t map[string]any, key string, required bool) (string, error) {
	v, ok := t[key]
	if !ok {
		if required {
			return "", fmt.Errorf("%s is required", key)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string, not %s", key, tomlType(v))
	}
	if required && s == "" {
		return "", fmt.Errorf("%s is empty", key)
	}
	return s, nil
}

// --- KV stores ---

// resolveKVStore reads one KV store in either of Viceroy's forms: an array
// of {key, data|file, metadata} tables ("path" is file's older name), or a
// table {format = "json", file = "..."} naming a JSON object whose values
// are either strings or {data|file, metadata} objects.
func resolveKVStore(v any, dir string) (map[string]KVEntry, error) {
	st := map[string]KVEntry{}
	if t, ok := v.(map[string]any); ok {
		file, err := fileFormatTable(t)
		if err != nil {
			return nil, err
		}
		obj, err := readJSONObject(resolvePath(dir, file), `a JSON object of keys to values, each a string or {"data": "..."} (or "file"), with "metadata" if any`)
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(obj) {
			e, err := kvEntryFromJSON(obj[k], dir)
			if err == nil {
				err = CheckKVKey(k)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: key %q: %w", file, k, err)
			}
			st[k] = e
		}
		return st, nil
	}
	items, ok := asArray(v)
	if !ok {
		return nil, fmt.Errorf("want an array of {key, data|file, metadata} tables or a {format, file} table, not %s", tomlType(v))
	}
	for i, item := range items {
		t, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("[%d]: want a table, not %s", i, tomlType(item))
		}
		key, e, err := kvEntryFromTOML(t, dir)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		// A later entry for the same key replaces the earlier one, as
		// inserting them in order does in Viceroy.
		st[key] = e
	}
	return st, nil
}

func kvEntryFromTOML(t map[string]any, dir string) (string, KVEntry, error) {
	key, err := stringField(t, "key", true)
	if err != nil {
		return "", KVEntry{}, err
	}
	if err := CheckKVKey(key); err != nil {
		return "", KVEntry{}, err
	}
	fields := map[string]*string{}
	for _, f := range []string{"data", "file", "path", "metadata"} {
		if _, ok := t[f]; !ok {
			continue
		}
		s, err := stringField(t, f, false)
		if err != nil {
			return "", KVEntry{}, fmt.Errorf("key %q: %w", key, err)
		}
		fields[f] = &s
	}
	e, err := kvEntry(fields, dir)
	if err != nil {
		return "", KVEntry{}, fmt.Errorf("key %q: %w", key, err)
	}
	return key, e, nil
}

func kvEntryFromJSON(raw json.RawMessage, dir string) (KVEntry, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return KVEntry{Value: []byte(s)}, nil
	}
	var obj map[string]*string
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return KVEntry{}, fmt.Errorf("value must be a string or an object of string data|file and metadata")
	}
	for f, p := range obj {
		if p == nil {
			return KVEntry{}, fmt.Errorf("%s must be a string", f)
		}
	}
	delete(obj, "path") // only the TOML form has the old name
	return kvEntry(obj, dir)
}

// kvEntry builds an entry from its data|file|path and metadata fields.
func kvEntry(fields map[string]*string, dir string) (KVEntry, error) {
	file := fields["file"]
	if file == nil {
		file = fields["path"]
	}
	data := fields["data"]
	var e KVEntry
	switch {
	case data != nil && file != nil:
		return KVEntry{}, fmt.Errorf("set data or file, not both")
	case data != nil:
		e.Value = []byte(*data)
	case file != nil:
		v, err := readFile(resolvePath(dir, *file), "the entry's value (the file's bytes, as they are)")
		if err != nil {
			return KVEntry{}, err
		}
		e.Value = v
	default:
		return KVEntry{}, fmt.Errorf("needs data or file")
	}
	if m := fields["metadata"]; m != nil {
		e.Metadata = []byte(*m)
	}
	return e, nil
}

// CheckKVKey applies Fastly's rules for KV store keys (as Viceroy states
// them): 1-1024 bytes of UTF-8, no CR or LF, none of # ; ? ^ |, no "." or
// ".." path segments, not under .well-known/acme-challenge, and not a
// single control, space or U+FFFE/U+FFFF character.
func CheckKVKey(key string) error {
	switch {
	case key == "":
		return errors.New("KV keys cannot be empty")
	case len(key) > 1024:
		return errors.New("KV keys cannot be longer than 1024 bytes")
	case !utf8.ValidString(key):
		return errors.New("KV keys must be valid UTF-8")
	case strings.HasPrefix(key, ".well-known/acme-challenge"):
		return errors.New("KV keys cannot start with .well-known/acme-challenge")
	case key == ".." || strings.Contains(key, "../") || strings.HasSuffix(key, "/.."):
		return errors.New(`KV keys cannot contain a ".." segment`)
	case key == "." || strings.Contains(key, "./") || strings.HasSuffix(key, "/."):
		return errors.New(`KV keys cannot contain a "." segment`)
	}
	if i := strings.IndexAny(key, "\r\n#;?^|"); i >= 0 {
		return fmt.Errorf("KV keys cannot contain %q", key[i:i+1])
	}
	if r, n := utf8.DecodeRuneInString(key); n == len(key) && (r <= 0x20 || r == 0xFFFE || r == 0xFFFF) {
		return fmt.Errorf("KV keys cannot be the single character %U", r)
	}
	return nil
}
