// Command edgepixel-sign signs pixel URLs for a site whose pixels must be
// signed (an email campaign, an ad): the edge counts a signed pixel only
// while its signature holds and it has not expired. The format is
// package pixelsign's.
//
//	edgepixel-sign --key-file site.key --ttl 720h 'https://px.example/p.gif?site=news.example&e=open'
//
// URLs come from the arguments, or one per line from standard input when
// there are none; each signed URL is printed on its own line.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/urlescape"
)

const usage = `usage: edgepixel-sign [flags] [URL...]

Signs each pixel URL (or each line of standard input) with the site's key
and prints it. Flags (environment variable in brackets):
  --key-file PATH   file holding the site's key (at least 16 bytes; white
                    space around it is ignored)         [EDGEPIXEL_SIGN_KEY_FILE]
  --ttl D           the signature expires this long from now (default 8760h)
                                                        [EDGEPIXEL_SIGN_TTL]
  --expires T       expiry as RFC 3339 time (2030-06-01T00:00:00Z) or Unix
                    seconds, instead of --ttl; either within 100 years
  --version         print the commit it was built from and exit
`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "edgepixel-sign:", err)
		os.Exit(flaghint.ExitCode(err))
	}
}

// run signs as main does; warnings about a URL that signs but may not say
// what its writer meant go to stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("edgepixel-sign", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("key-file", os.Getenv("EDGEPIXEL_SIGN_KEY_FILE"), "")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "")
	expires := fs.String("expires", "", "")
	version := fs.Bool("version", false, "")
	if v := os.Getenv("EDGEPIXEL_SIGN_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return flaghint.UsageError{Err: fmt.Errorf("EDGEPIXEL_SIGN_TTL: %w", flaghint.ExplainParse(err))}
		}
		*ttl = d
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return flaghint.UsageError{Err: fmt.Errorf("%w\n%s", flaghint.Explain(fs, err), flaghint.SeeHelp("edgepixel-sign"))}
	}
	if *version {
		fmt.Fprintln(stdout, "edgepixel-sign", buildinfo.Version())
		return nil
	}
	if *keyFile == "" {
		return flaghint.UsageError{Err: fmt.Errorf("--key-file is required: the site's signing key, the same bytes as in the edge's secret store\n%s", flaghint.SeeHelp("edgepixel-sign"))}
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("--key-file: %v", err)
	}
	key = pixelsign.Key(key)
	if len(key) < pixelsign.MinKeyBytes {
		// The command suggested writes the file: only one that is a
		// plain file (not /dev/null or a pipe) is named in it.
		dest := "KEYFILE"
		if fi, err := os.Stat(*keyFile); err == nil && fi.Mode().IsRegular() {
			dest = flaghint.ShellQuote(*keyFile)
		}
		return fmt.Errorf("%s: the key has %d bytes; use at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", *keyFile, len(key), pixelsign.MinKeyBytes, dest)
	}
	expiry := now.Add(*ttl).Unix()
	if *expires != "" && flaghint.Set(fs, "ttl") {
		return flaghint.UsageError{Err: fmt.Errorf("give --ttl or --expires, not both: each sets the expiry\n%s", flaghint.SeeHelp("edgepixel-sign"))}
	}
	if *expires != "" {
		if expiry, err = parseExpiry(*expires); err != nil {
			return flaghint.UsageError{Err: err}
		}
	}
	// A URL that is expired when made is refused by every edge
	// (expired_pixel): almost surely a mistyped --ttl or --expires, which
	// would otherwise show only as hits missing after the mail went out.
	if expiry <= now.Unix() {
		return flaghint.UsageError{Err: fmt.Errorf("the expiry %s is not in the future: give a positive --ttl or a later --expires", time.Unix(expiry, 0).UTC().Format(time.RFC3339))}
	}
	// Likewise an expiry past maxYears, a typo for one in reach (Unix
	// milliseconds, a digit too many), which would make a pixel that
	// cannot be retired but by its key.
	if limit := now.AddDate(maxYears, 0, 0); expiry > limit.Unix() {
		return flaghint.UsageError{Err: fmt.Errorf("the expiry %s is more than %d years away: give a --ttl or an --expires before %s", time.Unix(expiry, 0).UTC().Format(time.RFC3339), maxYears, limit.UTC().Format(time.DateOnly))}
	}
	sign := func(u string) error {
		signed, err := pixelsign.SignURL(key, u, expiry)
		var pu *url.URL
		if err == nil {
			// SignURL took it, so it parses; the check is its cip.
			if pu, err = url.Parse(u); err == nil {
				err = checkClient(pu)
			}
		}
		if err != nil {
			// The URL given is the user's input, as a flag's value is:
			// exit 2, as for a bad --expires.
			return flaghint.UsageError{Err: fmt.Errorf("%s: %v%s", u, err, urlHint(u, err))}
		}
		for _, w := range urlWarnings(pu) {
			fmt.Fprintf(stderr, "edgepixel-sign: warning: %s: %s\n", u, w)
		}
		fmt.Fprintln(stdout, signed)
		return nil
	}
	if fs.NArg() > 0 {
		// Every URL signed before any is printed: a bad one among them
		// prints nothing, rather than the URLs before it and an error.
		var out strings.Builder
		w := stdout
		stdout = &out
		for _, u := range fs.Args() {
			if err := sign(u); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, out.String())
		return err
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if u := strings.TrimSpace(sc.Text()); u != "" {
			if err := sign(u); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

// checkClient refuses u if its cip is one no client can be in
// (pixelsign.CheckClient): every hit of the signed URL would be refused
// as bad_pixel_signature (a tester's cip=notanip was signed without a
// word).
func checkClient(pu *url.URL) error {
	for _, cip := range pu.Query()[pixelsign.ParamClient] {
		if cip == "" {
			continue
		}
		if err := pixelsign.CheckClient(cip); err != nil {
			return err
		}
	}
	return nil
}

// urlHint explains err, SignURL's refusal of u, where the message alone
// does not: a URL copied out of an HTML template has its separators
// written "&amp;", which Go's query parser refuses as a semicolon
// separator (found by a new-user tester).
func urlHint(u string, err error) string {
	if !strings.Contains(err.Error(), "semicolon") {
		return ""
	}
	if strings.Contains(u, "&amp;") {
		return " (\"&amp;\" is HTML's escaping of \"&\", as a template writes a link: give the URL with plain \"&\", as a browser reads it, and escape the signed URL again if it goes back into HTML)"
	}
	return ` (a ";" in the query separates nothing: percent-encode it as "%3B")`
}

// urlWarnings are the warnings for a pixel URL pu that signs but may not
// say what its writer meant: a url= value not percent-encoded, whose own
// query (https://news.example/a?id=5&utm_source=nl) ends at its first
// "&", so that the page's parameters after it become the pixel's (found
// by a new-user tester). Those the edge does not read as the pixel's
// (pixel.IsParam) are lost, and utm_* ones are the pixel's own, which
// url='s own tags overrule; both are named.
func urlWarnings(pu *url.URL) []string {
	var after []string
	open := false // after a url= whose value has a raw '?'
	for k, v := range urlescape.Params(pu.RawQuery) {
		switch {
		case k == "url" && !open:
			open = strings.ContainsAny(v, "?")
		case open && (!pixel.IsParam(k) || strings.HasPrefix(k, "utm_")):
			after = append(after, k)
		}
	}
	if len(after) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("url='s value is not percent-encoded, so its query ends at its first \"&\": %s after it became the pixel's own parameters, not the page's (the edge does not read one it does not know; utm_* apply only where url= carries none); percent-encode url's value (url=https%%3A%%2F%%2F...%%3Fa%%3D1%%26b%%3D2, encodeURIComponent in JavaScript, url.QueryEscape in Go)",
		strings.Join(after, ", "))}
}

// maxYears bounds how far ahead a signature may expire.
const maxYears = 100

// parseExpiry reads an RFC 3339 time or Unix seconds (digits only: a
// date alone, or a number with anything after it, is refused rather than
// read as the seconds it starts with).
func parseExpiry(s string) (int64, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Unix(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		hint := ""
		if _, err := time.Parse(time.DateOnly, s); err == nil {
			hint = " (a day's start: " + s + "T00:00:00Z)"
		}
		return 0, fmt.Errorf("--expires %q: want an RFC 3339 time or Unix seconds%s", s, hint)
	}
	return n, nil
}
