package event

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"https://example.com/", 100, "https://example.com/"},
		{"abcdef", 3, "abc"},
		{"héllo", 2, "h"}, // never half of é
		{"héllo", 3, "hé"},
		{"a\xffb", 100, "a\uFFFDb"},                 // an invalid byte
		{"\xe2\x82", 100, "\uFFFD\uFFFD"},           // a truncated sequence: one mark per byte
		{"\xed\xa0\x80", 100, "\uFFFD\uFFFD\uFFFD"}, // an encoded surrogate
		{"a\x00b\tc\nd\x7fe", 100, "a\uFFFDb\uFFFDc\uFFFDd\uFFFDe"},
		{"\u0085x", 100, "\uFFFDx"},     // C1 control (NEL)
		{"a\xff", 3, "a"},               // the mark does not fit: cut before it
		{"日本語", 7, "日本"},                // 3-byte runes
		{"ok \uFFFD", 100, "ok \uFFFD"}, // a real U+FFFD is valid
		{"", 10, ""},
	} {
		if got := Clean(c.in, c.max); got != c.want {
			t.Errorf("Clean(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func TestCleanASCIIDoesNotAllocate(t *testing.T) {
	s := strings.Repeat("https://example.com/a?b=c ", 20)
	if n := testing.AllocsPerRun(100, func() { Clean(s, MaxURLLen); Clean(s, 10) }); n != 0 {
		t.Fatalf("%v allocations for printable ASCII", n)
	}
}

func TestIsClean(t *testing.T) {
	for s, want := range map[string]bool{"": true, "abc": true, "héllo 日本": true, "a\tb": false, "a\xff": false, "\u0085": false, "\x7f": false} {
		if IsClean(s) != want {
			t.Errorf("IsClean(%q) = %v", s, !want)
		}
	}
}

func TestCleanProps(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, ``},
		{`null`, ``},
		{` { "plan" : "pro", "n": [1, 2.5e3, true, null] } `, `{"plan":"pro","n":[1,2.5e3,true,null]}`},
		{`{"caf\u00e9":"\u65e5\/x"}`, `{"café":"日/x"}`},                       // unescaped
		{`{"q":"a\"b\\c"}`, `{"q":"a\"b\\c"}`},                                // the escapes JSON needs stay
		{`{"c":"a\nb\u0000c\u007f"}`, "{\"c\":\"a\uFFFDb\uFFFDc\uFFFD\"}"},    // controls, escaped or raw
		{`{"s":"\ud83d\ude00 \ud800 \udc00"}`, "{\"s\":\"😀 \uFFFD \uFFFD\"}"}, // pairs and lone surrogates
		{"{\"b\":\"\xff\"}", "{\"b\":\"\uFFFD\"}"},
		// A repeated key: once, at its first place, with its last value.
		{`{"user_id":"bob","user_id":"alice"}`, `{"user_id":"alice"}`},
		{`{"a":1,"b":{"a":2,"a":3},"a":[3,{"x":"}\",a"}],"c":"\\"}`, `{"a":[3,{"x":"}\",a"}],"b":{"a":2,"a":3},"c":"\\"}`},
		{`{"user\u005fid":"x","k":"v","user_id":"y"}`, `{"user_id":"y","k":"v"}`}, // one key in two spellings
	} {
		got, err := CleanProps([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("CleanProps(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{`[1]`, `"x"`, `{`, `{"a":}`, `1`} {
		if _, err := CleanProps([]byte(in)); err == nil {
			t.Errorf("CleanProps(%s) accepted", in)
		}
	}
	// The limit is on the canonical form: escapes a client spent do not count.
	val := strings.Repeat(`\u0061`, MaxPropsLen-16) // 6 bytes each sent, 1 stored
	if got, err := CleanProps([]byte(`{"k":"` + val + `"}`)); err != nil || len(got) != MaxPropsLen-16+8 {
		t.Errorf("escaped props within the limit once decoded: %d bytes, %v", len(got), err)
	}
	over := `{"k":"` + strings.Repeat("a", MaxPropsLen) + `"}`
	if _, err := CleanProps([]byte(over)); err != ErrPropsTooLarge {
		t.Errorf("props over the limit: %v", err)
	}
}

// FuzzClean: whatever the input and limit, the result is clean, within
// the limit, a fixed point, and equal to the input when that was clean
// and short enough.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "abc", "héllo", "a\xffb\x00", "\xed\xa0\x80", "日本語\u0085"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max & 0xFFF
		got := Clean(s, max)
		if !utf8.ValidString(got) || !IsClean(got) || len(got) > max {
			t.Fatalf("Clean(%q, %d) = %q", s, max, got)
		}
		if Clean(got, max) != got {
			t.Fatalf("not a fixed point: %q", got)
		}
		if IsClean(s) && len(s) <= max && got != s {
			t.Fatalf("changed clean input %q to %q", s, got)
		}
		if IsClean(s) && !strings.HasPrefix(s, got) {
			t.Fatalf("cut clean input %q to %q, not a prefix", s, got)
		}
	})
}

// FuzzCleanProps: accepted props are a JSON object whose text is clean,
// within the limit, canonical (cleaning it again changes nothing), and
// decodes to the same value as the input except for what the rule
// replaced.
func FuzzCleanProps(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"b":[{"a":2}],"a":"x"}`, `{"caf\u00e9":"\ud800"}`, "{\"b\":\"\xff\x7f\"}", `[1]`, `{"a":{"b":[1,"\n"]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := CleanProps(raw)
		if err != nil || got == "" {
			return
		}
		if len(got) > MaxPropsLen || !IsClean(got) {
			t.Fatalf("CleanProps(%q) = %q", raw, got)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(got), &v); err != nil || v == nil {
			t.Fatalf("CleanProps(%q) = %q: not an object: %v", raw, got, err)
		}
		again, err := CleanProps([]byte(got))
		if err != nil || again != got {
			t.Fatalf("not canonical: %q -> %q (%v)", got, again, err)
		}
		dec := json.NewDecoder(strings.NewReader(got))
		dec.Token() // {
		keys := map[string]bool{}
		for dec.More() {
			k, _ := dec.Token()
			if keys[k.(string)] {
				t.Fatalf("CleanProps(%q) = %q: key %q twice", raw, got, k)
			}
			keys[k.(string)] = true
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		walkStrings(v, func(s string) {
			if !IsClean(s) {
				t.Fatalf("CleanProps(%q) decodes to unclean %q", raw, s)
			}
		})
	})
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case map[string]any:
		for k, x := range v {
			fn(k)
			walkStrings(x, fn)
		}
	case []any:
		for _, x := range v {
			walkStrings(x, fn)
		}
	}
}

func BenchmarkCleanASCII(b *testing.B) {
	s := "https://example.com/some/page/path?utm_source=newsletter&utm_medium=email&x=1"
	for b.Loop() {
		Clean(s, MaxURLLen)
	}
}

func BenchmarkCleanUTF8(b *testing.B) {
	s := "https://example.com/wiki/日本語のページ?q=café"
	for b.Loop() {
		Clean(s, MaxURLLen)
	}
}
