package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/flaghint"
)

func readSalts(t *testing.T, dir string) map[string]privacy.Salt {
	t.Helper()
	got := map[string]privacy.Salt{}
	for _, k := range privacy.SaltKeys {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if os.IsNotExist(err) {
			continue
		}
		s, err := privacy.ParseSalt(string(b))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		got[k] = s
	}
	return got
}

// TestRotateDir runs the command over three days as cron would and checks
// the auditor's rule: after each day's run the entries hold today's and
// tomorrow's salts, and yesterday's is gone.
func TestRotateDir(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	ctx := context.Background()

	if _, err := run(ctx, []string{"--dir", dir, "--today"}, start, nil); err != nil {
		t.Fatal(err)
	}
	first := readSalts(t, dir)
	todaySalt := first[privacy.SaltKey(privacy.Day(start))]
	var prev map[string]privacy.Salt
	for i := 0; i < 3; i++ {
		now := start.Add(time.Duration(i) * 24 * time.Hour)
		day := privacy.Day(now)
		if _, err := run(ctx, []string{"--dir", dir, "--today"}, now, nil); err != nil {
			t.Fatal(err)
		}
		got := readSalts(t, dir)
		if len(got) != 2 || got[privacy.SaltKey(day)].Day != day || got[privacy.SaltKey(day+1)].Day != day+1 {
			t.Fatalf("day %d: entries %v; want today's and tomorrow's", i, got)
		}
		if i == 0 && got[privacy.SaltKey(day)] != todaySalt {
			t.Error("a second run the same day replaced today's salt")
		}
		if i > 0 && got[privacy.SaltKey(day)] != prev[privacy.SaltKey(day)] {
			t.Error("today's salt is not the one written as tomorrow's yesterday")
		}
		prev = got
	}

	// Run hourly, as the README's cron line does: a later run the same
	// day leaves tomorrow's salt as the first wrote it and says so.
	later := start.Add(2*24*time.Hour + time.Hour)
	out, err := run(ctx, []string{"--dir", dir}, later, nil)
	if err != nil || !strings.Contains(out, "already") {
		t.Errorf("a second run the same day: %q, %v", out, err)
	}
	if got := readSalts(t, dir); got[privacy.SaltKeys[0]] != prev[privacy.SaltKeys[0]] || got[privacy.SaltKeys[1]] != prev[privacy.SaltKeys[1]] {
		t.Error("a second run the same day replaced tomorrow's salt")
	}

	// Before 00:30 UTC yesterday's salt is still needed: no rotation.
	early := time.Date(2026, 12, 5, 0, 10, 0, 0, time.UTC)
	before := readSalts(t, dir)
	out, err = run(ctx, []string{"--dir", dir}, early, nil)
	if err != nil || !strings.Contains(out, "not rotating yet") {
		t.Fatalf("at 00:10: %q, %v", out, err)
	}
	if after := readSalts(t, dir); after[privacy.SaltKeys[0]] != before[privacy.SaltKeys[0]] || after[privacy.SaltKeys[1]] != before[privacy.SaltKeys[1]] {
		t.Error("rotated before the visit window passed")
	}
	if fi, err := os.Stat(filepath.Join(dir, privacy.SaltKeys[0])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("salt file mode: %v, %v", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files in the directory, want the 2 entries (no temporaries)", len(ents))
	}
}

// A first run without --today leaves today without a salt: it says so and
// what to run.
func TestMissingToday(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	out, err := run(context.Background(), []string{"--dir", dir}, now, nil)
	if err != nil || !strings.Contains(out, "today's salt (2026-11-30) is missing") || !strings.Contains(out, "--today") {
		t.Errorf("first run without --today: %q, %v", out, err)
	}
	out, err = run(context.Background(), []string{"--dir", dir, "--today"}, now, nil)
	if err != nil || !strings.Contains(out, "wrote today's salt") || !strings.Contains(out, "already") {
		t.Errorf("then with --today: %q, %v", out, err)
	}
	if got := readSalts(t, dir); len(got) != 2 {
		t.Errorf("entries %v, want today's and tomorrow's", got)
	}
}

func TestRotateFastly(t *testing.T) {
	type put struct{ Name, Secret string }
	var puts []put
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/resources/stores/secret/store123/secrets" || r.Header.Get("Fastly-Key") != "tok" {
			http.Error(w, "bad request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		var p put
		json.NewDecoder(r.Body).Decode(&p)
		puts = append(puts, p)
	}))
	defer srv.Close()
	t.Setenv("FASTLY_API_TOKEN", "tok")
	now := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	if _, err := run(context.Background(), []string{"--fastly-store", "store123", "--fastly-api", srv.URL, "--today"}, now, srv.Client()); err != nil {
		t.Fatal(err)
	}
	if len(puts) != 2 {
		t.Fatalf("%d secrets written, want today's and tomorrow's", len(puts))
	}
	for i, p := range puts {
		v, _ := base64.StdEncoding.DecodeString(p.Secret)
		s, err := privacy.ParseSalt(string(v))
		day := privacy.Day(now) + int32(i)
		if err != nil || s.Day != day || p.Name != privacy.SaltKey(day) {
			t.Errorf("secret %d: %s=%q (%v)", i, p.Name, v, err)
		}
	}
	if _, err := run(context.Background(), []string{"--fastly-store", "other", "--fastly-api", srv.URL}, now, srv.Client()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("an API error: %v", err)
	}
	t.Setenv("FASTLY_API_TOKEN", "")
	if _, err := run(context.Background(), []string{"--fastly-store", "store123"}, now, nil); err == nil {
		t.Error("no token: want an error")
	}
	if _, err := run(context.Background(), nil, now, nil); err == nil {
		t.Error("no store: want an error")
	}
}

// TestRotateCloudflareKV writes the salts into a Workers KV namespace
// through Cloudflare's API, as the worker reads them.
func TestRotateCloudflareKV(t *testing.T) {
	kv := map[string]string{}
	refuse := "" // a method the API then answers 403
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.URL.Path, "/accounts/acc1/storage/kv/namespaces/ns1/values/")
		if r.Method == refuse {
			http.Error(w, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`, http.StatusForbidden)
			return
		}
		if r.Method == http.MethodGet && ok && r.Header.Get("Authorization") == "Bearer tok" {
			if v, ok := kv[key]; ok {
				w.Write([]byte(v))
			} else {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"success":false,"errors":[{"code":10009,"message":"get: 'key not found'"}]}`))
			}
			return
		}
		if r.Method != http.MethodPut || !ok || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(r.Body)
		kv[key] = string(b)
		w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{}}`))
	}))
	defer srv.Close()
	t.Setenv("CLOUDFLARE_API_TOKEN", "tok")
	t.Setenv("CLOUDFLARE_ACCOUNT_ID", "")
	args := []string{"--cf-kv", "ns1", "--cf-account", "acc1", "--cf-api", srv.URL}
	day1 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	if _, err := run(context.Background(), append(args, "--today"), day1, srv.Client()); err != nil {
		t.Fatal(err)
	}
	for _, day := range []int32{privacy.Day(day1), privacy.Day(day1) + 1} {
		s, err := privacy.ParseSalt(kv[privacy.SaltKey(day)])
		if err != nil || s.Day != day {
			t.Errorf("%s = %q (%v), want day %d's salt", privacy.SaltKey(day), kv[privacy.SaltKey(day)], err, day)
		}
	}
	// --today again the same day, and another run, keep both: instances
	// have read them (a tester's second --today replaced today's).
	before := maps.Clone(kv)
	for _, a := range [][]string{append(args, "--today"), args} {
		out, err := run(context.Background(), a, day1.Add(time.Hour), srv.Client())
		if err != nil || !maps.Equal(kv, before) || !strings.Contains(out, "already in") {
			t.Errorf("%q the same day: %v, %q; salts %v, want %v kept", a, err, out, kv, before)
		}
	}
	// The next day's run writes the day after over yesterday's.
	today := kv[privacy.SaltKey(privacy.Day(day1)+1)]
	if _, err := run(context.Background(), args, day1.Add(24*time.Hour), srv.Client()); err != nil {
		t.Fatal(err)
	}
	if s, _ := privacy.ParseSalt(kv[privacy.SaltKey(privacy.Day(day1))]); s.Day != privacy.Day(day1)+2 || kv[privacy.SaltKey(privacy.Day(day1)+1)] != today {
		t.Errorf("after the second day: %v", kv)
	}
	if _, err := run(context.Background(), []string{"--cf-kv", "ns1"}, day1, srv.Client()); err == nil || !strings.Contains(err.Error(), "--cf-account") {
		t.Errorf("no account: %v", err)
	}
	// The command line's lack is named first, even without the token: a
	// user fixing the token first was then told of the account.
	t.Setenv("CLOUDFLARE_API_TOKEN", "")
	if _, err := run(context.Background(), []string{"--cf-kv", "ns1"}, day1, srv.Client()); err == nil || !strings.Contains(err.Error(), "--cf-account") {
		t.Errorf("no account and no token: %v, want --cf-account named", err)
	}
	if _, err := run(context.Background(), args, day1, srv.Client()); err == nil || !strings.Contains(err.Error(), "CLOUDFLARE_API_TOKEN") {
		t.Errorf("no token: %v", err)
	}
	t.Setenv("CLOUDFLARE_API_TOKEN", "tok")
	if _, err := run(context.Background(), []string{"--cf-kv", "other", "--cf-account", "acc1", "--cf-api", srv.URL}, day1, srv.Client()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("an API error: %v", err)
	}
	// A refused write is the run's error; a refused read stops the run
	// before any write, rather than write over salts that may be there.
	third := day1.Add(48 * time.Hour)
	for _, method := range []string{http.MethodPut, http.MethodGet} {
		refuse, before = method, maps.Clone(kv)
		out, err := run(context.Background(), args, third, srv.Client())
		if err == nil || !strings.Contains(err.Error(), "403") || !maps.Equal(kv, before) {
			t.Errorf("%s refused: %v, %q; salts %v, want an error naming 403 and %v kept", method, err, out, kv, before)
		}
	}
	refuse = ""
	// Without --today, today's salt missing from KV is said, as of files.
	clear(kv)
	if out, err := run(context.Background(), args, third, srv.Client()); err != nil || !strings.Contains(out, "is missing from "+privacy.SaltKey(privacy.Day(third))) || !strings.Contains(out, ", a new key") {
		t.Errorf("an empty namespace: %v, %q; want today's salt said missing and tomorrow's written as a new key", err, out)
	}
	if _, err := run(context.Background(), []string{"--cf-kv", "ns1", "--dir", t.TempDir()}, day1, nil); err == nil {
		t.Error("two stores: want an error")
	}
}

// TestDirMessages checks what the command tells a user about the files:
// a missing directory is named as such, and the line about tomorrow's
// salt says what it replaced, not a yesterday's salt that was never there.
func TestDirMessages(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	missing := filepath.Join(t.TempDir(), "secrets")
	if out, err := run(ctx, []string{"--dir", missing, "--today"}, now, nil); err == nil || !strings.Contains(err.Error(), "mkdir -p "+missing) || out != "" {
		t.Errorf("missing --dir: %q, %v; want an error naming mkdir -p and nothing else", out, err)
	}

	spaced := filepath.Join(t.TempDir(), "it's here")
	if _, err := run(ctx, []string{"--dir", spaced, "--today"}, now, nil); err == nil || !strings.Contains(err.Error(), `mkdir -p '`+strings.ReplaceAll(spaced, "'", `'\''`)+`'`) {
		t.Errorf("missing --dir with a space and a quote: %v; want it quoted for the shell", err)
	}

	// A file: not told to mkdir -p it, which would fail (a tester's).
	file := filepath.Join(t.TempDir(), "salts")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, []string{"--dir", file, "--today"}, now, nil); err == nil || strings.Contains(err.Error(), "mkdir") || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("--dir of a file: %v", err)
	}

	dir := t.TempDir()
	out, err := run(ctx, []string{"--dir", dir, "--today"}, now, nil)
	if err != nil || !strings.Contains(out, "2026-12-02") || !strings.Contains(out, "a new file") || strings.Contains(out, "yesterday") {
		t.Errorf("first run: %q, %v", out, err)
	}
	out, err = run(ctx, []string{"--dir", dir}, now.Add(24*time.Hour), nil)
	if err != nil || !strings.Contains(out, "2026-12-03") || !strings.Contains(out, "over 2026-12-01's") {
		t.Errorf("next day: %q, %v", out, err)
	}
	os.WriteFile(filepath.Join(dir, privacy.SaltKey(privacy.Day(now)+3)), []byte("garbage\n"), 0o600)
	out, err = run(ctx, []string{"--dir", dir}, now.Add(2*24*time.Hour), nil)
	if err != nil || !strings.Contains(out, "over a malformed file") {
		t.Errorf("over a bad file: %q, %v", out, err)
	}

	// Today's file holding garbage is named as malformed, with the form a
	// salt file has, not reported as if it were absent.
	later := now.Add(3 * 24 * time.Hour)
	todays := filepath.Join(dir, privacy.SaltKey(privacy.Day(later)))
	os.WriteFile(todays, []byte("garbage\n"), 0o600)
	out, err = run(ctx, []string{"--dir", dir}, later, nil)
	if err != nil || !strings.Contains(out, todays+" is malformed") || !strings.Contains(out, "32 lowercase hex digits, e.g. 2026-12-04:") ||
		strings.Contains(out, "missing from") {
		t.Errorf("a malformed file for today: %q, %v; want it named as malformed with a valid line's form", out, err)
	}
}

// A usage error is the error and a pointer to --help, not the usage.
func TestUsageErrorsAreShort(t *testing.T) {
	for _, args := range [][]string{{"--today=maybe", "--dir", t.TempDir()}, {}} {
		_, err := run(context.Background(), args, time.Now(), nil)
		if err == nil || !strings.Contains(err.Error(), "--help") || strings.Contains(err.Error(), "usage:") {
			t.Errorf("%q: %v; want the error and --help, without the usage", args, err)
		}
	}
}

// A stray argument is a usage error, before anything is written: the
// flag package leaves it, and every flag after it, unread.
func TestStrayArgument(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"--dir", dir, "extra-arg"}, {"--dir", dir, "x", "--today"}, {"--version", "x"}} {
		_, err := run(context.Background(), args, time.Now(), nil)
		if err == nil || !strings.Contains(err.Error(), "unexpected argument \"") || !strings.Contains(err.Error(), "--help") {
			t.Errorf("%q: %v; want the stray argument named", args, err)
		}
	}
	if got := readSalts(t, dir); len(got) != 0 {
		t.Errorf("salts written: %v", got)
	}
}

// TestSaltVersion: --version answers like the other commands', instead of
// "flag provided but not defined".
func TestSaltVersion(t *testing.T) {
	if out, err := run(context.Background(), []string{"--version"}, time.Now(), nil); err != nil || !strings.HasPrefix(out, "edgepixel-salt ") {
		t.Errorf("--version: %q, %v", out, err)
	}
}

// A store that cannot be reached or written is a runtime failure (exit
// 1), as in the other commands; a flag or variable missing, not parsing
// or contradicting another is a usage error (exit 2).
func TestSaltExitCodes(t *testing.T) {
	now := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	t.Setenv("FASTLY_API_TOKEN", "x")
	t.Setenv("EDGEPIXEL_SALT_DIR", "")
	t.Setenv("EDGEPIXEL_SALT_FASTLY_STORE", "")
	t.Setenv("EDGEPIXEL_SALT_CF_KV", "")
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"--dir", t.TempDir(), "--today"}, 0},
		{[]string{"--fastly-store", "X", "--fastly-api", "http://127.0.0.1:1"}, 1}, // nothing listens
		{[]string{"--dir", filepath.Join(t.TempDir(), "missing")}, 1},
		{[]string{"--today=maybe", "--dir", t.TempDir()}, 2},
		{[]string{"--dir", t.TempDir(), "extra"}, 2},
		{[]string{}, 2},
		{[]string{"--dir", t.TempDir(), "--fastly-store", "X"}, 2},
		{[]string{"--cf-kv", "NS"}, 2}, // no CLOUDFLARE_API_TOKEN
		// Found by a tester: a URL that is none was a raw Go error at
		// run time (exit 1), a blank --dir a directory named " ".
		{[]string{"--fastly-store", "X", "--fastly-api", "notaurl"}, 2},
		{[]string{"--dir", t.TempDir(), "--cf-api", "ftp://x"}, 2},
		{[]string{"--dir", " "}, 2},
		// Only a blank value is none: "/srv/salt " is a directory name
		// as given, here a missing one (exit 1), not /srv/salt.
		{[]string{"--dir", t.TempDir() + " "}, 1},
	}
	if fi, err := os.Stat("/proc/self"); err == nil && fi.IsDir() {
		cases = append(cases, struct {
			args []string
			want int
		}{[]string{"--dir", "/proc/self", "--today"}, 1}) // a directory nothing can be written to
	}
	for _, tc := range cases {
		_, err := run(context.Background(), tc.args, now, http.DefaultClient)
		if got := flaghint.ExitCode(err); got != tc.want {
			t.Errorf("%q: exit %d (%v), want %d", tc.args, got, err, tc.want)
		}
	} // A blank --dir is said to be blank, not merely missing.
	if _, err := run(context.Background(), []string{"--today", "--dir", "  "}, now, http.DefaultClient); err == nil || !strings.Contains(err.Error(), "--dir is blank") {
		t.Errorf("blank --dir: %v", err)
	}
}
