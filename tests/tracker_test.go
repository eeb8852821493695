package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/shared/event"
)

// trackerEndpoint stands in for a pixel endpoint: it serves s.js and
// records the events posted to /e, answering status; or, with status
// cut, counts them in cuts and cuts the connection without an answer or
// a record (an endpoint going down; Chromium sends a POST cut on a
// reused connection once more).
type trackerEndpoint struct {
	*httptest.Server
	mu      sync.Mutex
	events  []map[string]any
	status  int
	scripts atomic.Int64 // s.js served
	cuts    atomic.Int64 // POSTs cut
}

func newTrackerEndpoint(t *testing.T, status int) *trackerEndpoint {
	e := &trackerEndpoint{status: status}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.URL.Path {
		case "/s.js":
			e.scripts.Add(1)
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(tracker.Script)
		case "/e":
			body, _ := io.ReadAll(r.Body)
			var ev map[string]any
			if err := json.Unmarshal(body, &ev); err != nil {
				t.Errorf("%s: body %q is not one JSON event: %v", e.URL, body, err)
			}
			ev["_query_site"] = r.URL.Query().Get("site")
			e.mu.Lock()
			status := e.status
			if status != cut {
				e.events = append(e.events, ev)
			}
			e.mu.Unlock()
			if status == cut {
				e.cuts.Add(1)
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
			w.WriteHeader(status)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(e.Close)
	return e
}

// cut is the status of a trackerEndpoint that answers nothing.
const cut = -1

func (e *trackerEndpoint) got() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]map[string]any(nil), e.events...)
}

// TestTrackerScript runs s.js in headless Chromium on a page of another
// origin: the pageview, single-page-app views, a custom event, the
// consent word and US Privacy string, failover to the second endpoint
// when the first gives no answer, and a page restored from the
// back/forward cache, each event once with a valid client event id.
func TestTrackerScript(t *testing.T) {
	primary, fallback := newTrackerEndpoint(t, http.StatusNoContent), newTrackerEndpoint(t, http.StatusNoContent)
	var preamble, attrs atomic.Value // strings: runs before s.js loads; s.js's further attributes
	preamble.Store("")
	attrs.Store("")
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>t</title><script>%s</script>
<script src="%s/s.js" data-site="shop.example" data-fallback="%s"%s></script>`, preamble.Load(), primary.URL, fallback.URL, attrs.Load())
	}))
	defer page.Close()
	ctx := browser(t, 2*time.Minute)
	run := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](js)); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	waitFor := func(e *trackerEndpoint, n int) []map[string]any {
		t.Helper()
		var evs []map[string]any
		eventually(t, 20*time.Second, fmt.Sprintf("%d events at %s", n, e.URL), func() (bool, string) {
			evs = e.got()
			return len(evs) >= n, fmt.Sprint(len(evs))
		})
		time.Sleep(300 * time.Millisecond) // a duplicate would arrive meanwhile
		if evs = e.got(); len(evs) != n {
			t.Fatalf("%s got %d events, want %d: %v", e.URL, len(evs), n, evs)
		}
		return evs
	}
	ids := map[string]bool{}
	check := func(ev map[string]any, name, url, ref string) {
		t.Helper()
		id, _ := ev["event_id"].(string)
		if _, skewed, err := event.ParseClientIDSkewed(id, time.Now().UnixMilli()); err != nil || skewed || ids[id] {
			t.Errorf("event %v: event_id %q is not a fresh valid UUIDv7 (%v)", ev, id, err)
		}
		ids[id] = true
		if ev["site"] != "shop.example" || ev["_query_site"] != "shop.example" || ev["name"] != name ||
			ev["url"] != url || ev["ref"] != ref || ev["sw"] == nil || ev["t"] == nil {
			t.Errorf("event %v: want site shop.example, name %q, url %q, ref %q, sw and t", ev, name, url, ref)
		}
	}

	run(chromedp.Navigate(page.URL + "/start"))
	check(waitFor(primary, 1)[0], "pageview", page.URL+"/start", "")

	// A link to a place in the page (a table of contents) fires
	// popstate: no view, and the next view's referrer has no fragment.
	eval(`location.hash = "#faq"`)
	eval(`history.pushState({}, "", "/cart?x=1")`)
	eval(`history.replaceState({}, "", "/cart?x=1&q=a")`) // the page rewriting its address: no view
	eval(`location.hash = "#faq"`)                        // and what a place in it is compared with
	eval(`history.replaceState({}, "", "/cart?x=1")`)
	// Calls the edge would refuse, or that cannot be sent, are not sent
	// and do not throw into the page.
	eval(`edgepixel(42); edgepixel(""); edgepixel("x", "not an object"); edgepixel("x", [1]); edgepixel("x", {n: 1n})`)
	eval(`edgepixel("signup", {plan: "pro"})`)
	eval(`edgepixel.consent(false); edgepixel.usPrivacy("1YYN"); history.pushState({}, "", "/done")`)
	evs := waitFor(primary, 4)
	check(evs[1], "pageview", page.URL+"/cart?x=1", page.URL+"/start")
	// A custom event names its view's referrer: without one it would
	// count as a direct visit.
	check(evs[2], "signup", page.URL+"/cart?x=1", page.URL+"/start")
	if props, _ := evs[2]["props"].(map[string]any); props["plan"] != "pro" {
		t.Errorf("custom event props %v", evs[2]["props"])
	}
	check(evs[3], "pageview", page.URL+"/done", page.URL+"/cart?x=1")
	if evs[3]["consent"] != "0" || evs[1]["consent"] != nil {
		t.Errorf("consent: %v before, %v after edgepixel.consent(false)", evs[1]["consent"], evs[3]["consent"])
	}
	if evs[3]["us_privacy"] != "1YYN" || evs[1]["us_privacy"] != nil {
		t.Errorf("us_privacy: %v before, %v after edgepixel.usPrivacy", evs[1]["us_privacy"], evs[3]["us_privacy"])
	}

	setStatus := func(e *trackerEndpoint, status int) {
		e.mu.Lock()
		e.status = status
		e.mu.Unlock()
	}
	// The first endpoint gives no answer: the fallback gets the event.
	// (s.js sent by sendBeacon, whose failure it cannot see, and the
	// fallback was never taken: a tester's.)
	setStatus(primary, cut)
	run(chromedp.Navigate(page.URL + "/again"))
	moved := waitFor(fallback, 1)[0]
	check(moved, "pageview", page.URL+"/again", "")
	if primary.cuts.Load() == 0 {
		t.Error("the fallback got the event before the first endpoint was tried")
	}

	// Neither answers (a POP restarting): s.js tries again from the
	// first a second after the fallback's cut, and stops once one takes
	// it.
	setStatus(fallback, cut)
	cuts := fallback.cuts.Load()
	run(chromedp.Navigate(page.URL + "/retry"))
	eventually(t, 20*time.Second, "the fallback tried", func() (bool, string) {
		n := fallback.cuts.Load()
		return n > cuts, fmt.Sprint(n)
	})
	setStatus(primary, http.StatusNoContent)
	check(waitFor(primary, 5)[4], "pageview", page.URL+"/retry", "")
	if n := len(fallback.got()); n != 1 {
		t.Errorf("the fallback stored %d events, want 1", n)
	}

	// An answer ends it, a refusal too (here a 503): it is not sent to
	// the fallback nor again. A refusal the page may not read (an
	// origin not on the site's list) was sent again as a failure, and
	// counted each time.
	setStatus(primary, http.StatusServiceUnavailable)
	setStatus(fallback, http.StatusNoContent)
	run(chromedp.Navigate(page.URL + "/refused"))
	check(waitFor(primary, 6)[5], "pageview", page.URL+"/refused", "")
	time.Sleep(1500 * time.Millisecond) // past the first retry's second
	if n, m := len(fallback.got()), len(primary.got()); n != 1 || m != 6 {
		t.Errorf("after a 503: the fallback got %d events (want 1), the first endpoint %d (want 6)", n, m)
	}
	setStatus(primary, http.StatusNoContent)

	// Back to a page the browser kept in its back/forward cache: no
	// script runs again, and s.js sends the view on pageshow, as the
	// page loaded anew would. (A page the cache restores keeps its
	// window's state: kept says the browser did use the cache.)
	run(chromedp.Navigate(page.URL + "/kept"))
	check(waitFor(primary, 7)[6], "pageview", page.URL+"/kept", "")
	eval(`window.kept = 1`)
	run(chromedp.Navigate(page.URL + "/next"))
	check(waitFor(primary, 8)[7], "pageview", page.URL+"/next", "")
	eval(`history.back()`)
	// Shown again from the cache: its referrer is itself, not the one it
	// was first opened from (here none, a direct visit's).
	check(waitFor(primary, 9)[8], "pageview", page.URL+"/kept", page.URL+"/kept")
	if kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.kept === 1`)); err != nil || !kept {
		t.Errorf("the page came back by a new load, not from the back/forward cache (%v): the restore was not tested", err)
	}

	// data-hash: an app routed by the fragment counts each route as a
	// page, the '#' escaped in the path and the route's query joined to
	// the page's; the same route again is no view.
	attrs.Store(" data-hash")
	run(chromedp.Navigate(page.URL + "/app/?utm_source=nl#/cart?y=1"))
	check(waitFor(primary, 10)[9], "pageview", page.URL+"/app/%23/cart?utm_source=nl&y=1", "")
	eval(`location.hash = "#/pay"`)
	eval(`location.hash = "#/pay"`)
	eval(`history.pushState({}, "", "#/pay")`)
	check(waitFor(primary, 11)[10], "pageview", page.URL+"/app/%23/pay?utm_source=nl", page.URL+"/app/%23/cart?utm_source=nl&y=1")
	// A reload names itself as referrer.
	run(chromedp.Reload())
	check(waitFor(primary, 12)[11], "pageview", page.URL+"/app/%23/pay?utm_source=nl", page.URL+"/app/%23/pay?utm_source=nl")
	// A fragment that is no route is a place in the route's view: no
	// view (counted by the next waitFor).
	eval(`location.hash = "#faq"`)
	attrs.Store("")

	// Calls a page queued before s.js ran are sent after its view.
	preamble.Store(`window.edgepixel = window.edgepixel || function () { (edgepixel.q = edgepixel.q || []).push(arguments); }; edgepixel("early", {a: "1"});`)
	run(chromedp.Navigate(page.URL + "/queued"))
	evs = waitFor(primary, 14)[12:] // in either order: two fetches at once
	if evs[0]["name"] == "early" {
		evs[0], evs[1] = evs[1], evs[0]
	}
	check(evs[0], "pageview", page.URL+"/queued", "")
	check(evs[1], "early", page.URL+"/queued", "")
	if props, _ := evs[1]["props"].(map[string]any); props["a"] != "1" {
		t.Errorf("queued event props %v", evs[1]["props"])
	}
	// The same stub with nothing queued yet (its q comes with its first
	// call): s.js takes it all the same.
	preamble.Store(`window.edgepixel = window.edgepixel || function () { (edgepixel.q = edgepixel.q || []).push(arguments); };`)
	run(chromedp.Navigate(page.URL + "/stub"))
	check(waitFor(primary, 15)[14], "pageview", page.URL+"/stub", "")
	eval(`edgepixel("later")`)
	check(waitFor(primary, 16)[15], "later", page.URL+"/stub", "")
	preamble.Store("")
	// A router's redirect, a replaceState right after the pushState:
	// one view, of the page it settles on.
	eval(`history.pushState({}, "", "/old"); Promise.resolve().then(() => history.replaceState({}, "", "/new"))`)
	check(waitFor(primary, 17)[16], "pageview", page.URL+"/new", page.URL+"/stub")

	// data-outbound and data-downloads: a click on a link to another
	// host, and on one to a file, each an event with the link's address
	// without its query; a link within the site, one the page cancels,
	// and a right click, none. (The test's own handler, after s.js's,
	// cancels the clicks; the SVG link's synthetic click leaves the page
	// all the same in this Chromium, so the next step opens a page anew.)
	attrs.Store(" data-outbound data-downloads")
	run(chromedp.Navigate(page.URL + "/links"))
	check(waitFor(primary, 18)[17], "pageview", page.URL+"/links", "")
	eval(`document.body.insertAdjacentHTML("beforeend", '<a id=out href="https://example.com/to?who=me">o</a><a id=in href="/here">i</a>' +
			'<a id=file href="/files/report.PDF?v=2"><span id=inner>f</span></a><a id=stay href="https://example.com/stay" onclick="event.preventDefault()">s</a>' +
			'<svg><a id=svg href="https://example.org/svg"><text>v</text></a></svg>');
		window.addEventListener("click", e => e.preventDefault());
		for (const id of ["in", "out", "inner", "stay"]) document.getElementById(id).click();
		document.getElementById("svg").dispatchEvent(new MouseEvent("click", {bubbles: true}));
		document.getElementById("out").dispatchEvent(new MouseEvent("auxclick", {bubbles: true, button: 2}))`)
	evs = waitFor(primary, 21)[18:]
	want := map[string]string{"https://example.com/to": "outbound", page.URL + "/files/report.PDF": "download", "https://example.org/svg": "outbound"}
	for _, ev := range evs {
		props, _ := ev["props"].(map[string]any)
		u, _ := props["url"].(string)
		check(ev, want[u], page.URL+"/links", "")
		delete(want, u)
	}
	if len(want) > 0 {
		t.Errorf("no event for the links %v", want)
	}
	attrs.Store("")

	// Props over the edge's limit, counted as the edge counts them, are
	// sent, for the edge to refuse and count (props_too_large), and the
	// page's console says so: here both are under the limit in
	// JavaScript's own string length, one over it in UTF-8, the other
	// once the edge stores each line break as U+FFFD (3 bytes, where
	// JSON writes \n in 2).
	run(chromedp.Navigate(page.URL + "/big"))
	check(waitFor(primary, 22)[21], "pageview", page.URL+"/big", "")
	eval(fmt.Sprintf(`window.warned = []; console.warn = m => warned.push(m);
		edgepixel("big", {k: "\u00e9".repeat(%d)}); edgepixel("lines", {k: "\n".repeat(%d)})`, event.MaxPropsLen*3/4, event.MaxPropsLen*3/8))
	for _, ev := range waitFor(primary, 24)[22:] {
		check(ev, ev["name"].(string), page.URL+"/big", "")
	}
	warned, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`warned`))
	for _, name := range []string{"big", "lines"} {
		if want := fmt.Sprintf("event %s: props over %d bytes", name, event.MaxPropsLen); err != nil || !strings.Contains(strings.Join(warned, "\n"), want) {
			t.Errorf("console warnings %q (%v), want one of %q", warned, err, want)
		}
	}

	// A copy of the page saved to disk and opened from it loads s.js,
	// which sends nothing: its file: URL names the person's folders. Its
	// edgepixel does nothing, so the page's calls do not throw.
	saved := filepath.Join(t.TempDir(), "saved.html")
	html := fmt.Sprintf(`<!doctype html><meta charset="utf-8"><title>t</title><script src="%s/s.js" data-site="shop.example"></script>`, primary.URL)
	if err := os.WriteFile(saved, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	scripts, before := primary.scripts.Load(), len(primary.got())
	run(chromedp.Navigate("file://" + saved))
	var defined string
	eventually(t, 20*time.Second, "s.js loaded on the file: page", func() (bool, string) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState != "complete" ? "" : typeof edgepixel != "function" ? typeof edgepixel : (edgepixel("signup"), edgepixel.view(), edgepixel.consent(true), "function")`))
		if err != nil {
			return false, err.Error()
		}
		defined = v
		return primary.scripts.Load() > scripts && defined != "", fmt.Sprintf("s.js served %d times, edgepixel %q", primary.scripts.Load()-scripts, defined)
	})
	time.Sleep(time.Second) // a pageview is sent at once: it would arrive meanwhile
	if defined != "function" || len(primary.got()) != before {
		t.Errorf("on a file: page edgepixel is %q and s.js sent %d events, want a function that sends nothing", defined, len(primary.got())-before)
	}
}
