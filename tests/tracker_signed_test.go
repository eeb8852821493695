package tests

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestSignedTrackerScript runs s.js from the POP (the real edge .wasm) in
// headless Chromium, on pages of another origin, for a site whose events
// must be signed (sign=reject):
//   - a page carrying the endpoint query its server signed for the
//     visitor's address (data-signed, cip) has its pageview and custom
//     event stored, verified;
//   - the same script with a query signed for another client's network
//     (as if copied out of someone else's page), or with none, has every
//     event refused and counted (bad_pixel_signature, unsigned), and
//     nothing of them stored.
func TestSignedTrackerScript(t *testing.T) {
	const site = "sjs-reject"
	s := startStack(t, stack.Options{
		EdgeConfig: map[string]string{
			"batch_max_age_ms":            "50",
			pixel.ConfigSitePrefix + site: "sign=reject",
		},
		EdgeSecrets: map[string]string{"pixel_key." + site: pixelKey},
	})
	signed := func(cip string) string {
		q, err := pixelsign.Sign([]byte(pixelKey), "site="+site+"&cip="+cip, time.Now().Add(time.Hour).Unix())
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// What the site's server renders: one page per case, by path.
	signedFor := map[string]string{
		"/here":      signed("127.0.0.1"), // Chromium reaches the POP from here
		"/elsewhere": signed("192.0.2.0/24"),
		"/unsigned":  "",
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := signedFor[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		attr := ""
		if q != "" {
			attr = ` data-signed="` + html.EscapeString(q) + `"`
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>t</title>
<script src="%s/s.js" data-site="%s"%s></script>`, s.PopURL, site, attr)
	}))
	defer page.Close()
	ctx := browser(t, 2*time.Minute)
	for _, path := range []string{"/here", "/elsewhere", "/unsigned"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+path)); err != nil {
			t.Fatal(err)
		}
		poll(ctx, t, "s.js loaded on "+path, `typeof edgepixel == "function"`)
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`edgepixel("signup-`+path[1:]+`", {plan: "pro"})`)); err != nil {
			t.Fatal(err)
		}
	}

	// Each refused page's two events are one POST each, counted as a
	// dropped hit of the site.
	eventually(t, 60*time.Second, "the refused POSTs counted", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Dropped[wire.DropBadSignature] == 2 && l.Dropped[wire.DropUnsigned] == 2, fmt.Sprintf("%+v", l)
	})
	got := waitEnriched(t, s, site, 2)
	for _, name := range []string{"pageview", "signup-here"} {
		if e, ok := got[name]; !ok || e.Signature != pixel.SignatureVerified || e.URL != page.URL+"/here" {
			t.Errorf("%s: stored %v, signature %q, url %q; want it verified, from %s/here", name, ok, e.Signature, e.URL, page.URL)
		}
	}
	if len(got) != 2 {
		t.Errorf("stored %d events, want 2: %v", len(got), names(got))
	}
}
