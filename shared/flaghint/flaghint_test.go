package flaghint

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" : the error unchanged
	}{
		{[]string{"-n", "x"}, "want a whole number"},
		{[]string{"-max-body", "4k"}, "want a whole number of bytes"},
		{[]string{"-wait", "5"}, "want a duration such as"},
		{[]string{"-ratio", "half"}, "want a number"},
		{[]string{"-on=yes"}, "want true or false"},
		{[]string{"-name"}, "flag needs an argument: --name"},
		{[]string{"--nosuch"}, "unknown flag --nosuch"},
		{[]string{"-nmae", "x"}, "unknown flag --nmae; did you mean --name?"},
		{[]string{"--ratio", "half"}, `invalid value "half" for flag --ratio: parse error: want a number`},
		{[]string{"-on=yes"}, `invalid boolean value "yes" for --on: parse error: want true or false`},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 0, "")
		fs.Int64("max-body", 0, "")
		fs.Duration("wait", 0, "")
		fs.Float64("ratio", 0, "")
		fs.Bool("on", false, "")
		fs.String("name", "", "")
		err := fs.Parse(tc.args)
		if err == nil {
			t.Fatalf("%v: parsed", tc.args)
		}
		got := Explain(fs, err)
		if !errors.Is(got, err) {
			t.Errorf("%v: %v does not wrap %v", tc.args, got, err)
		}
		if tc.want == "" {
			if got.Error() != err.Error() {
				t.Errorf("%v: %q, want it unchanged", tc.args, got)
			}
		} else if !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%v: %q, want %q in it", tc.args, got, tc.want)
		}
	}
}

func TestExplainParse(t *testing.T) {
	_, boolErr := strconv.ParseBool("yes")
	_, intErr := strconv.Atoi("x")
	_, durErr := time.ParseDuration("5")
	other := errors.New("no such file")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{boolErr, "want true or false"},
		{intErr, "want a whole number"},
		{durErr, "want a duration such as"},
		{other, ""},
	} {
		got := ExplainParse(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("%v does not wrap %v", got, tc.err)
		}
		if tc.want == "" {
			if got != tc.err {
				t.Errorf("%q, want it unchanged", got)
			}
		} else if !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%q, want %q in it", got, tc.want)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	known := map[string]bool{"EP_RETENTION_DAYS": true, "EP_ADDR": true}
	got := UnknownEnv([]string{"EP_RETENTON_DAYS=3", "EP_ADDR=:1", "HOME=/root", "EP_ZZZZZZZZ=1", "EP_ADR"}, "EP_", known)
	want := []string{
		"EP_ADR is set but names no setting: ignored; did you mean EP_ADDR?",
		"EP_RETENTON_DAYS is set but names no setting: ignored; did you mean EP_RETENTION_DAYS?",
		"EP_ZZZZZZZZ is set but names no setting: ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownEnv = %q, want %q", got, want)
	}
}

func TestFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"n", int8(1), "want a whole number"},
		{"n", uint16(1), "want a whole number"},
		{"memory-limit", uint64(1), "want a whole number of bytes, e.g. 4194304 for 4 MiB"},
		{"ratio", float32(1), "want a number"},
		{"on", true, "want true or false (or 1 or 0)"},
		{"wait", time.Second, "want a duration such as 500ms, 30s, 5m or 720h"},
		{"name", "x", ""}, // a string's own error says it
		{"list", []string{"a"}, ""},
		{"nil", nil, ""},
	} {
		if got := For(tc.name, tc.v); got != tc.want {
			t.Errorf("For(%q, %T) = %q, want %q", tc.name, tc.v, got, tc.want)
		}
	}
}

func TestNoteEnv(t *testing.T) {
	base := errors.New("--max-conns 0: want a count; --instances 5 exceeds --max-instances 2")
	for _, tc := range []struct {
		vals []EnvValue
		want string // "" : err unchanged
	}{
		{nil, ""},
		{[]EnvValue{{"max-conns-per-addr", "X_MAX_CONNS_PER_ADDR", "1"}}, ""}, // named only as a longer flag's prefix
		{[]EnvValue{{"conns", "X_CONNS", "1"}}, ""},                           // not after "--"
		{[]EnvValue{{"max-conns", "X_MAX_CONNS", "0"}}, `(--max-conns is X_MAX_CONNS's value, "0")`},
		{[]EnvValue{{"max-instances", "X_MAX_INSTANCES", ""}, {"instances", "X_INSTANCES", ""}},
			"(--instances is X_INSTANCES's value; --max-instances is X_MAX_INSTANCES's value)"},
	} {
		got := NoteEnv(base, tc.vals)
		if tc.want == "" {
			if got != base {
				t.Errorf("%v: %v; want the error unchanged", tc.vals, got)
			}
			continue
		}
		if !errors.Is(got, base) || got.Error() != base.Error()+"\n"+tc.want {
			t.Errorf("%v: %q; want the error and %q", tc.vals, got, tc.want)
		}
	}
	for msg, want := range map[string]bool{"--secret": true, "--secret: x": true, "(--secret)": true, "--secret-file x": false, "--secrets": false, "x --secret=y": true} {
		if got := namesFlag(msg, "secret"); got != want {
			t.Errorf("namesFlag(%q, secret) = %v, want %v", msg, got, want)
		}
	}
}

func TestNearest(t *testing.T) {
	known := []string{"max_entries", "max_bytes", "period", "queue"}
	for name, want := range map[string]string{"max_entires": "max_entries", "max_byte": "max_bytes", "perod": "period", "token": "", "max_entries": "max_entries", "qeueu": "queue"} {
		if got := Nearest(name, known); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestSet(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("a", "default", "")
	fs.String("b", "default", "")
	if err := fs.Parse([]string{"-a", "default"}); err != nil {
		t.Fatal(err)
	}
	// Given its default's value is still given; never given is not.
	if !Set(fs, "a") || Set(fs, "b") || Set(fs, "c") {
		t.Errorf("Set: a %v, b %v, c %v; want true, false, false", Set(fs, "a"), Set(fs, "b"), Set(fs, "c"))
	}
}

func TestJSONField(t *testing.T) {
	var v struct {
		A *int16         `json:"a"`
		B string         `json:"b"`
		C map[string]int `json:"c"`
		D chan int       `json:"-"`
	}
	for body, want := range map[string]string{
		`{"a":40000}`: "a must be a whole number from -32768 to 32767, not a JSON number 40000",
		`{"b":1}`:     "b must be a string, not a JSON number",
		`{"c":[]}`:    "c must be an object, not a JSON array",
	} {
		var te *json.UnmarshalTypeError
		if err := json.Unmarshal([]byte(body), &v); !errors.As(err, &te) {
			t.Fatalf("%s: %v, want a type error", body, err)
		}
		if got := JSONField(te.Field, te); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
	te := &json.UnmarshalTypeError{Value: "number", Type: reflect.TypeOf(make(chan int))}
	if got := JSONField("d", te); got != "d cannot be a JSON number" {
		t.Errorf("a type with no words: %q", got)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7680": true, "[::1]:7680": true, "127.0.0.2:1": true, "[::ffff:127.0.0.1]:1": true,
		"[::]:7680": false, "0.0.0.0:7680": false, "192.0.2.1:7680": false, "[2001:db8::1]:6060": false,
		"[fe80::1%eth0]:6060": false, "localhost:7680": false, "": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestPrintDefaults(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("addr", ":1", "where to listen")
	fs.Bool("v", false, "verbose")
	var b strings.Builder
	PrintDefaults(&b, fs)
	if got := b.String(); !strings.Contains(got, "  --addr string\n    \twhere to listen") || !strings.Contains(got, "  --v\tverbose") || strings.Contains(got, "\n  -a") {
		t.Errorf("%q", got)
	}
}
