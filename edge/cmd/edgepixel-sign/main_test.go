package main

import (
	"bytes"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
)

func TestSignCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("0123456789abcdef0123\n"), 0o600)
	now := time.Unix(1_800_000_000, 0)

	var out bytes.Buffer
	err := run([]string{"--key-file", keyFile, "--ttl", "1h", "https://px.example/p.gif?site=a.example&e=open"}, nil, &out, io.Discard, now)
	if err != nil {
		t.Fatal(err)
	}
	// A cip no client is in: refused, nothing printed (a tester's
	// cip=notanip was signed, and every hit then refused).
	var bad bytes.Buffer
	if err := run([]string{"--key-file", keyFile, "https://px.example/e?site=a.example&cip=notanip"}, nil, &bad, io.Discard, now); err == nil || bad.Len() > 0 || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("cip=notanip: %v, printed %q", err, bad.String())
	}
	if err := run([]string{"--key-file", keyFile, "https://px.example/e?site=a.example&cip=203.0.113.0/24"}, nil, io.Discard, io.Discard, now); err != nil {
		t.Errorf("cip=203.0.113.0/24: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123")
	if err := pixelsign.Verify(u.RawQuery, now.Unix()+3600, key); err != nil {
		t.Errorf("signed URL %s: %v", u, err)
	}
	if err := pixelsign.Verify(u.RawQuery, now.Unix()+3601, key); err != pixelsign.ErrExpired {
		t.Errorf("after the ttl: %v", err)
	}

	// White space around the key is not the key's, as the edge and the
	// Worker read it (pixelsign.Key): a key file with a trailing space
	// signed URLs that the edge refused.
	spaced := filepath.Join(dir, "spaced")
	os.WriteFile(spaced, []byte(" 0123456789abcdef0123 \t\n"), 0o600)
	out.Reset()
	if err := run([]string{"--key-file", spaced, "https://px.example/p.gif?site=a.example"}, nil, &out, io.Discard, now); err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(strings.TrimSpace(out.String())); err != nil || pixelsign.Verify(u.RawQuery, now.Unix(), pixelsign.Key([]byte("0123456789abcdef0123\n"))) != nil {
		t.Errorf("signed with a key file with white space around: %s does not verify (%v)", out.String(), err)
	}

	out.Reset()
	in := strings.NewReader("https://px.example/p.gif?site=a\n\nhttps://px.example/p.gif?site=b\n")
	if err := run([]string{"--key-file", keyFile, "--expires", "2030-01-01T00:00:00Z"}, in, &out, io.Discard, now); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "exp=1893456000") {
		t.Errorf("stdin lines signed as %q", lines)
	}

	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	for _, args := range [][]string{
		{"https://px.example/p.gif?site=a"},                      // no key
		{"--key-file", short, "https://px.example/p.gif?site=a"}, // short key
		{"--key-file", keyFile, "https://px.example/p.gif?e=1"},  // no site
		{"--key-file", keyFile, "--expires", "soon", "https://px.example/p.gif?site=a"},
		{"--key-file", keyFile, "--ttl", "-1h", "https://px.example/p.gif?site=a"},                                     // expired already
		{"--key-file", keyFile, "--expires", "2020-01-01T00:00:00Z", "https://px.example/p.gif?site=a"},                // in the past
		{"--key-file", keyFile, "--expires", "1800000000", "https://px.example/p.gif?site=a"},                          // expires now
		{"--key-file", keyFile, "--ttl", "1h", "--expires", "2030-01-01T00:00:00Z", "https://px.example/p.gif?site=a"}, // which?
	} {
		if err := run(args, strings.NewReader(""), &out, io.Discard, now); err == nil {
			t.Errorf("%q: want an error", args)
		}
	}
}

// A --ttl without a unit is refused with the form it takes, and with a
// pointer to --help rather than the whole usage.
func TestSignFlagErrors(t *testing.T) {
	err := run([]string{"--ttl", "5", "https://px.example/p.gif?site=a"}, strings.NewReader(""), io.Discard, io.Discard, time.Now())
	if err == nil || !strings.Contains(err.Error(), "-ttl") || !strings.Contains(err.Error(), "720h") ||
		!strings.Contains(err.Error(), "--help") || strings.Contains(err.Error(), "usage:") {
		t.Errorf("--ttl 5: %v; want the flag, a duration's form and --help, without the usage", err)
	}
	t.Setenv("EDGEPIXEL_SIGN_TTL", "5")
	if err := run([]string{"https://px.example/p.gif?site=a"}, strings.NewReader(""), io.Discard, io.Discard, time.Now()); err == nil ||
		!strings.Contains(err.Error(), "EDGEPIXEL_SIGN_TTL") || !strings.Contains(err.Error(), "720h") {
		t.Errorf("EDGEPIXEL_SIGN_TTL=5: %v; want the variable and a duration's form", err)
	}
}

// TestSignVersion: --version answers like the other commands', instead of
// "flag provided but not defined".
func TestSignVersion(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"--version"}, strings.NewReader(""), &out, io.Discard, time.Now()); err != nil || !strings.HasPrefix(out.String(), "edgepixel-sign ") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}

// --expires takes all of its value or none: a date alone, or seconds with
// anything after them, is refused rather than read as the number it
// starts with; an expiry out of reach is a typo too.
func TestSignExpires(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)), 0o600)
	now := time.Unix(1800000000, 0)
	for expires, want := range map[string]string{
		"1999999999":           "", // Unix seconds
		"2030-01-01T00:00:00Z": "",
		"1999999999xyz":        "want an RFC 3339 time or Unix seconds",
		"4000000000 junk":      "want an RFC 3339 time or Unix seconds",
		"1.5e9":                "want an RFC 3339 time or Unix seconds",
		"+1999999999":          "want an RFC 3339 time or Unix seconds",
		"2030-06-01":           "(a day's start: 2030-06-01T00:00:00Z)",
		"99999999999999":       "more than 100 years away",
		"1999999999000":        "more than 100 years away", // milliseconds
	} {
		var out strings.Builder
		err := run([]string{"--key-file", keyFile, "--expires", expires, "https://px.example/p.gif?site=a"}, strings.NewReader(""), &out, io.Discard, now)
		switch {
		case want == "" && (err != nil || !strings.Contains(out.String(), "exp=")):
			t.Errorf("--expires %q: %v %q, want a signed URL", expires, err, out.String())
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("--expires %q: %v, want an error with %q", expires, err, want)
		}
	}
}

// A key file that cannot be read is a runtime failure (exit 1), as in the
// other commands; a flag that does not parse or is out of its domain, or
// a URL that cannot be signed, is a usage error (exit 2).
func TestSignExitCodes(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)), 0o600)
	now := time.Unix(1800000000, 0)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--key-file", keyFile, "https://px.example/p.gif?site=a"}, 0},
		{[]string{"--key-file", "/nonexistent", "https://px.example/p.gif?site=a"}, 1},
		{[]string{"https://px.example/p.gif?site=a"}, 2},                                      // no key
		{[]string{"--key-file", keyFile, "--ttl", "5", "https://px.example/p.gif?site=a"}, 2}, // unparsed
		{[]string{"--key-file", keyFile, "--ttl", "-1h", "https://px.example/p.gif?site=a"}, 2},
		{[]string{"--key-file", keyFile, "--expires", "soon", "https://px.example/p.gif?site=a"}, 2},
		{[]string{"--key-file", keyFile, "--ttl", "1h", "--expires", "2030-01-01T00:00:00Z", "https://px.example/p.gif?site=a"}, 2},
		// A URL that is not one is bad input too (a tester's exit 1).
		{[]string{"--key-file", keyFile, "%zz"}, 2},
		{[]string{"--key-file", keyFile, "not a url"}, 2},
	} {
		err := run(tc.args, strings.NewReader(""), io.Discard, io.Discard, now)
		if got := flaghint.ExitCode(err); got != tc.want {
			t.Errorf("%q: exit %d (%v), want %d", tc.args, got, err, tc.want)
		}
	}
	// A bad URL after a good one prints nothing (a second tester got the
	// first signed, then exit 2).
	var out strings.Builder
	if err := run([]string{"--key-file", keyFile, "https://px.example/p.gif?site=a", "extra"}, strings.NewReader(""), &out, io.Discard, now); err == nil || out.Len() != 0 {
		t.Errorf("a good URL then a bad one: %v, printed %q", err, out.String())
	}
	// A key that is too short from a file that is not one: the command
	// suggested does not write over /dev/null.
	if err := run([]string{"--key-file", os.DevNull, "https://px.example/p.gif?site=a"}, strings.NewReader(""), io.Discard, io.Discard, now); err == nil || !strings.Contains(err.Error(), "> KEYFILE") {
		t.Errorf("--key-file /dev/null: %v", err)
	}
}

// Found by a new-user tester: a URL copied from an HTML template, with
// "&amp;" between its parameters, failed "invalid semicolon separator in
// query" with no hint; and a url= value that is not percent-encoded
// signed silently, though its page's parameters became the pixel's.
func TestSignURLHints(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)), 0o600)
	now := time.Unix(1800000000, 0)
	sign := func(u string) (out, warn string, err error) {
		var o, w strings.Builder
		err = run([]string{"--key-file", keyFile, u}, strings.NewReader(""), &o, &w, now)
		return o.String(), w.String(), err
	}
	if _, _, err := sign("https://px.example/p.gif?site=news&amp;e=open&amp;open=email"); err == nil ||
		!strings.Contains(err.Error(), "invalid semicolon separator") || !strings.Contains(err.Error(), `"&amp;" is HTML's escaping of "&"`) {
		t.Errorf("&amp;: %v, want the parser's error and what &amp; is", err)
	}
	if _, _, err := sign("https://px.example/p.gif?site=news&e=a;b"); err == nil || !strings.Contains(err.Error(), "%3B") {
		t.Errorf("a semicolon: %v, want a hint to encode it", err)
	}
	out, warn, err := sign("https://px.example/p.gif?site=news&e=open&url=https://news.example/a?x=1&id=5&utm_source=nl")
	if err != nil || !strings.Contains(out, "sig=") {
		t.Fatalf("a raw url= value: %v %q, want it signed", err, out)
	}
	if !strings.Contains(warn, "warning: ") || !strings.Contains(warn, "url='s value is not percent-encoded") || !strings.Contains(warn, "id, utm_source after it") {
		t.Errorf("a raw url= value: warned %q, want id and utm_source named", warn)
	}
	for _, u := range []string{
		"https://px.example/p.gif?site=news&e=open&url=" + url.QueryEscape("https://news.example/a?x=1&id=5") + "&utm_source=nl",
		"https://px.example/p.gif?site=news&e=open&open=email&utm_campaign=x&utm_source=nl",
		"https://px.example/p.gif?url=https://news.example/a&site=news&e=open", // no query of its own: nothing cut
	} {
		if _, warn, err := sign(u); err != nil || warn != "" {
			t.Errorf("%s: %v, warned %q; want neither", u, err, warn)
		}
	}
}
