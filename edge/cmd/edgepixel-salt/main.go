// Command edgepixel-salt rotates the daily salts of visitor ids (package
// privacy describes the scheme): run it once a day, any time after 00:30
// UTC, e.g. from cron at 01:00 UTC. It writes tomorrow's salt into the
// entry that held yesterday's, so yesterday's salt is gone once it has
// run. With --today it also writes today's salt (the first run; today's
// visitor ids then change once).
//
// Three stores:
//
//	edgepixel-salt --dir DIR                 files DIR/visitor_salt_0 and _1, as the
//	                                         self-hosted POP's secret store reads them
//	edgepixel-salt --fastly-store STORE_ID   a Fastly secret store, through Fastly's
//	                                         API (token in FASTLY_API_TOKEN)
//	edgepixel-salt --cf-kv NAMESPACE_ID      a Cloudflare Workers KV namespace, which
//	  --cf-account ACCOUNT_ID                the worker reads (wrangler/README.md), through
//	                                         Cloudflare's API (token in CLOUDFLARE_API_TOKEN)
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/flaghint"
)

const usage = `usage: edgepixel-salt (--dir DIR | --fastly-store STORE_ID | --cf-kv NAMESPACE_ID --cf-account ACCOUNT_ID) [--today]

Writes tomorrow's visitor-id salt over yesterday's; run daily after 00:30 UTC
(with --dir or --cf-kv, more often does no harm: a salt already there is kept).
  --dir DIR              write DIR/visitor_salt_0 and DIR/visitor_salt_1 (the POP's
                         secret store files)              [EDGEPIXEL_SALT_DIR]
  --fastly-store ID      write to this Fastly secret store [EDGEPIXEL_SALT_FASTLY_STORE]
                         (API token in FASTLY_API_TOKEN)
  --fastly-api URL       Fastly's API (default https://api.fastly.com)
  --cf-kv ID             write to this Workers KV namespace [EDGEPIXEL_SALT_CF_KV]
  --cf-account ID        its Cloudflare account             [CLOUDFLARE_ACCOUNT_ID]
                         (API token with Workers KV Storage:Edit in CLOUDFLARE_API_TOKEN)
  --cf-api URL           Cloudflare's API (default https://api.cloudflare.com/client/v4)
  --today                also write today's salt (first run; with --dir or --cf-kv
                         only when today's is missing)
  --version              print the commit it was built from and exit
`

func main() {
	out, err := run(context.Background(), os.Args[1:], time.Now(), http.DefaultClient)
	fmt.Print(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgepixel-salt:", err)
		os.Exit(flaghint.ExitCode(err))
	}
}

func run(ctx context.Context, args []string, now time.Time, client *http.Client) (string, error) {
	fs := flag.NewFlagSet("edgepixel-salt", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", os.Getenv("EDGEPIXEL_SALT_DIR"), "")
	store := fs.String("fastly-store", os.Getenv("EDGEPIXEL_SALT_FASTLY_STORE"), "")
	api := fs.String("fastly-api", "https://api.fastly.com", "")
	kv := fs.String("cf-kv", os.Getenv("EDGEPIXEL_SALT_CF_KV"), "")
	account := fs.String("cf-account", os.Getenv("CLOUDFLARE_ACCOUNT_ID"), "")
	cfAPI := fs.String("cf-api", "https://api.cloudflare.com/client/v4", "")
	today := fs.Bool("today", false, "")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usage, nil
		}
		return "", flaghint.UsageError{Err: fmt.Errorf("%w\n%s", flaghint.Explain(fs, err), flaghint.SeeHelp("edgepixel-salt"))}
	}
	// The flag package stops at the first argument that is not a flag and
	// leaves the rest: ignored, a flag after a stray word (--dir D x
	// --today) went unread while the run still said it had worked.
	if fs.NArg() > 0 {
		return "", flaghint.UsageError{Err: fmt.Errorf("unexpected argument %q: edgepixel-salt takes flags only\n%s", fs.Arg(0), flaghint.SeeHelp("edgepixel-salt"))}
	}
	if *version {
		return "edgepixel-salt " + buildinfo.Version() + "\n", nil
	}
	// A value of white space only (an env file's "X= ") is none, as an
	// empty one is, not a directory or store named " ".
	blank := ""
	for _, v := range []struct {
		name string
		p    *string
	}{{"--dir", dir}, {"--fastly-store", store}, {"--cf-kv", kv}, {"--cf-account", account}} {
		if *v.p != "" && strings.TrimSpace(*v.p) == "" {
			*v.p, blank = "", v.name
		}
	}
	for _, a := range []struct{ name, v, example string }{{"--fastly-api", *api, "https://api.fastly.com"}, {"--cf-api", *cfAPI, "https://api.cloudflare.com/client/v4"}} {
		if u, err := url.Parse(a.v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", flaghint.UsageError{Err: fmt.Errorf("%s %q: want an http or https URL, e.g. %s", a.name, a.v, a.example)}
		}
	}
	if n := btoi(*dir != "") + btoi(*store != "") + btoi(*kv != ""); n != 1 {
		msg := "give exactly one of --dir, --fastly-store or --cf-kv"
		if blank != "" {
			msg = blank + " is blank: " + msg
		}
		return "", flaghint.UsageError{Err: errors.New(msg + "\n" + flaghint.SeeHelp("edgepixel-salt"))}
	}
	var put func(key string, s privacy.Salt) error
	// read reads day's entry back: the salt it holds (of any day), or ok
	// false and why it holds none ("" for no entry at all); err is the
	// store's failure to answer, which stops the run rather than write
	// over a salt that may be there. nil: the store cannot be read back
	// (Fastly's API cannot read a secret), so every run writes.
	var read func(day int32) (s privacy.Salt, ok bool, why string, err error)
	newEntry := "a new entry" // what tomorrow's salt makes where none was
	switch {
	case *kv != "":
		if *account == "" {
			return "", flaghint.UsageError{Err: errors.New("--cf-kv needs --cf-account (or CLOUDFLARE_ACCOUNT_ID): the account id on the Workers dashboard")}
		}
		token := os.Getenv("CLOUDFLARE_API_TOKEN")
		if token == "" {
			return "", flaghint.UsageError{Err: errors.New("CLOUDFLARE_API_TOKEN is not set: create an API token with the Workers KV Storage:Edit permission at https://dash.cloudflare.com/profile/api-tokens")}
		}
		kvURL := *cfAPI + "/accounts/" + url.PathEscape(*account) + "/storage/kv/namespaces/" + url.PathEscape(*kv) + "/values/"
		put = func(key string, s privacy.Salt) error {
			_, err := cfKV(ctx, client, http.MethodPut, kvURL+url.PathEscape(key), token, s.String())
			return err
		}
		// Read back, so that --today again, or a second run in a day,
		// keeps the salts isolates already read (a tester's second
		// --today gave today's visitors new ids).
		read = func(day int32) (privacy.Salt, bool, string, error) {
			key := privacy.SaltKey(day)
			v, err := cfKV(ctx, client, http.MethodGet, kvURL+url.PathEscape(key), token, "")
			var se statusError
			switch {
			case errors.As(err, &se) && se.code == http.StatusNotFound:
				return privacy.Salt{}, false, "", nil
			case err != nil:
				return privacy.Salt{}, false, "", err
			}
			s, err := privacy.ParseSalt(strings.TrimSpace(string(v)))
			if err != nil {
				return s, false, key + " holds no salt (" + err.Error() + ")", nil
			}
			return s, true, "", nil
		}
		newEntry = "a new key"
	case *dir != "":
		// Checked first: otherwise a missing directory shows as a failure
		// to create a temporary file in it, after a warning about today's
		// salt that is beside the point.
		switch fi, err := os.Stat(*dir); {
		case errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("--dir %s does not exist: create it first (mkdir -p %s), the one the POP's fastly.toml names the salt files in", *dir, flaghint.ShellQuote(*dir))
		case err != nil:
			return "", fmt.Errorf("--dir: %w", err)
		case !fi.IsDir():
			// Not mkdir -p, which fails on a file (a tester's
			// --dir /etc/passwd was told to run it).
			return "", fmt.Errorf("--dir %s is a file, not a directory: give the directory the POP's fastly.toml names the salt files in", *dir)
		}
		put = func(key string, s privacy.Salt) error { return writeFile(filepath.Join(*dir, key), s.String()+"\n") }
		// A file malformed or unreadable is written over, as ever: the
		// error names the file.
		read = func(day int32) (privacy.Salt, bool, string, error) {
			s, err := readSalt(*dir, day)
			switch {
			case os.IsNotExist(err):
				return s, false, "", nil
			case err != nil:
				return s, false, err.Error(), nil
			}
			return s, true, "", nil
		}
		newEntry = "a new file"
	default:
		token := os.Getenv("FASTLY_API_TOKEN")
		if token == "" {
			return "", flaghint.UsageError{Err: errors.New("FASTLY_API_TOKEN is not set: create an API token with the global scope at https://manage.fastly.com/account/personal/tokens")}
		}
		put = func(key string, s privacy.Salt) error {
			return putFastly(ctx, client, *api, token, *store, key, s.String())
		}
	}
	// has reports whether day's entry holds day's salt.
	has := func(day int32) (bool, error) {
		if read == nil {
			return false, nil
		}
		s, ok, _, err := read(day)
		return ok && s.Day == day, err
	}
	// replaced says what day's entry held before day's salt goes over it:
	// where it cannot be read, what a daily run leaves there, the salt of
	// two days before.
	replaced := func(day int32) string {
		if read == nil {
			return fmt.Sprintf("over yesterday's (%s)", dateOf(day-2))
		}
		switch s, ok, why, _ := read(day); {
		case ok:
			return fmt.Sprintf("over %s's", dateOf(s.Day))
		case why == "":
			return newEntry
		}
		return "over a malformed " + strings.TrimPrefix(newEntry, "a new ")
	}
	// missing says why today's salt is not in its entry.
	missing := func(day int32) string {
		switch s, ok, why, _ := read(day); {
		case ok:
			return fmt.Sprintf("is missing: %s holds %s's", privacy.SaltKey(day), dateOf(s.Day))
		case why == "":
			return "is missing from " + privacy.SaltKey(day)
		default:
			return "is missing: " + why
		}
	}

	day := privacy.Day(now)
	var log bytes.Buffer
	hasToday, err := has(day)
	if err != nil {
		return "", fmt.Errorf("reading today's salt (%s) back: %w", privacy.SaltKey(day), err)
	}
	if *today && hasToday {
		fmt.Fprintf(&log, "today's salt (%s) is already in %s; kept\n", dateOf(day), privacy.SaltKey(day))
	} else if *today {
		if err := put(privacy.SaltKey(day), newSalt(day)); err != nil {
			return log.String(), err
		}
		fmt.Fprintf(&log, "wrote today's salt (%s) to %s\n", dateOf(day), privacy.SaltKey(day))
	} else if read != nil && !hasToday {
		fmt.Fprintf(&log, "today's salt (%s) %s\nUntil tomorrow events carry no visitor id; run again with --today to write it\n", dateOf(day), missing(day))
	}
	if since := now.Sub(time.Unix(int64(day)*86400, 0)); since < privacy.VisitWindow {
		fmt.Fprintf(&log, "not rotating yet: yesterday's salt joins visits across midnight until %s UTC; run again after that\n",
			time.Unix(int64(day)*86400, 0).Add(privacy.VisitWindow).UTC().Format("15:04"))
		return log.String(), nil
	}
	// Run again the same day (hourly from cron, or by hand), a store read
	// back (--dir, --cf-kv) keeps tomorrow's salt: replacing it would give
	// instances that already read it another salt than those that read it
	// later. Fastly's API cannot read a secret back, so there every run
	// writes it.
	hasTomorrow, err := has(day + 1)
	if err != nil {
		return log.String(), fmt.Errorf("reading tomorrow's salt (%s) back: %w", privacy.SaltKey(day+1), err)
	}
	if hasTomorrow {
		fmt.Fprintf(&log, "tomorrow's salt (%s) is already in %s; nothing to do\n", dateOf(day+1), privacy.SaltKey(day+1))
		return log.String(), nil
	}
	was := replaced(day + 1)
	if err := put(privacy.SaltKey(day+1), newSalt(day+1)); err != nil {
		return log.String(), err
	}
	fmt.Fprintf(&log, "wrote tomorrow's salt (%s) to %s, %s\n", dateOf(day+1), privacy.SaltKey(day+1), was)
	return log.String(), nil
}

// readSalt reads the salt file of day's entry in dir; the error for a file
// that does not parse names it and says what a salt file holds.
func readSalt(dir string, day int32) (privacy.Salt, error) {
	path := filepath.Join(dir, privacy.SaltKey(day))
	b, err := os.ReadFile(path)
	if err != nil {
		return privacy.Salt{}, err
	}
	s, err := privacy.ParseSalt(string(b))
	if err != nil {
		example := privacy.NewSalt(day, [16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
		return s, fmt.Errorf("%s is malformed (a salt file holds one line: the day it is for, a colon and 32 lowercase hex digits, e.g. %s)", path, example)
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cfKV sends method (PUT with value as the body, or GET) to a Workers KV
// key's URL (/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name},
// per Cloudflare's API reference for Workers KV) and returns the answer's
// body: a GET's is the value.
func cfKV(ctx context.Context, client *http.Client, method, u, token, value string) ([]byte, error) {
	var body io.Reader
	if method == http.MethodPut {
		body = strings.NewReader(value)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	return call(client, req, "Cloudflare API")
}

// statusError is an API's answer other than 2xx: its status code and
// what the error says of it.
type statusError struct {
	code int
	msg  string
}

func (e statusError) Error() string { return e.msg }

// call sends req and returns the body of a 2xx answer (up to 4 KiB);
// another answer is a statusError naming api, its status and the start
// of its body.
func call(client *http.Client, req *http.Request, api string) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return nil, statusError{resp.StatusCode, fmt.Sprintf("%s: %s: %s", api, resp.Status, bytes.TrimSpace(b[:min(len(b), 512)]))}
	}
	return b, err
}

func newSalt(day int32) privacy.Salt {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return privacy.NewSalt(day, b)
}

func dateOf(day int32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly)
}

// writeFile replaces path's content atomically and durably: a reader sees
// the old salt or the new one, and the old one is not left in a temporary
// file.
func writeFile(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".salt-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// putFastly creates or recreates a secret (PUT
// /resources/stores/secret/{store_id}/secrets; the value base64-encoded),
// per Fastly's API reference for secret store items.
func putFastly(ctx context.Context, client *http.Client, api, token, store, name, value string) error {
	body, _ := json.Marshal(map[string]string{"name": name, "secret": base64.StdEncoding.EncodeToString([]byte(value))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, api+"/resources/stores/secret/"+store+"/secrets", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Fastly-Key", token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	_, err = call(client, req, "Fastly API")
	return err
}
