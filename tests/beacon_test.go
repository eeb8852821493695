package tests

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// beaconPage is the page a site embeds, served from an origin other than
// the POP's. send(kind, site, name[, eventId]) sends one event the way kind
// says and resolves to what the page could tell: "queued" for a beacon
// (the browser sends it later and says nothing more), the status for a
// fetch whose answer passed the CORS check, "blocked: ..." for one that
// did not, "loaded" for the image.
const beaconPage = `<!doctype html><meta charset="utf-8"><title>beacons</title>
<script>
const POP = %q;
function uuidv7() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) { b[i] = ms %% 256; ms = Math.floor(ms / 256); }
  b[6] = (b[6] & 0x0f) | 0x70; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
  return h.slice(0,8)+"-"+h.slice(8,12)+"-"+h.slice(12,16)+"-"+h.slice(16,20)+"-"+h.slice(20);
}
async function send(kind, site, name, eventId) {
  const ev = {site, name, url: location.href + "#" + name};
  if (eventId) ev.event_id = eventId;
  const body = JSON.stringify(ev);
  switch (kind) {
  case "beacon-json": // a JSON Blob: not CORS-safelisted, so a preflight first
    return navigator.sendBeacon(POP + "/e?site=" + encodeURIComponent(site),
      new Blob([body], {type: "application/json"})) ? "queued" : "refused";
  case "beacon-text": // a string: text/plain, no preflight
    return navigator.sendBeacon(POP + "/e", body) ? "queued" : "refused";
  case "fetch-keepalive":
    try {
      const r = await fetch(POP + "/e?site=" + encodeURIComponent(site), {method: "POST", keepalive: true,
        credentials: "include", mode: "cors", headers: {"Content-Type": "application/json"}, body});
      return String(r.status);
    } catch (e) { return "blocked: " + e; }
  case "img":
    return await new Promise(resolve => {
      const img = new Image();
      img.onload = () => resolve("loaded");
      img.onerror = () => resolve("error");
      img.src = POP + "/p.gif?site=" + encodeURIComponent(site) + "&e=" + encodeURIComponent(name) + "&url=" + encodeURIComponent(ev.url);
    });
  }
  return "unknown kind " + kind;
}
</script>`

// pageServer serves beaconPage for the POP at *pop; its origin
// (http://127.0.0.1:PORT) differs from the POP's by the port, which makes
// every request to the POP cross-origin.
func pageServer(t *testing.T, pop *string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, beaconPage, *pop)
	}))
	t.Cleanup(s.Close)
	return s
}

// browser starts headless Chromium with the flags ENVIRONMENT.md lists;
// it stops when the test ends, and all of its steps together get at most d.
func browser(t *testing.T, d time.Duration) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(need(t, deps.Chromium)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	for attempt := 1; ; attempt++ {
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(actx)
		// Started here rather than at the test's first step: Chromium now
		// and then exits before it listens ("chrome failed to start", once
		// in a CI run), which says nothing about the code under test, so
		// it gets two more tries.
		err := chromedp.Do(ctx)
		if err == nil {
			ctx, cancelTimeout := context.WithTimeout(ctx, d)
			t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
			return ctx
		}
		cancelCtx()
		cancelAlloc()
		if attempt == 3 {
			t.Fatalf("headless Chromium did not start in %d tries: %v", attempt, err)
		}
		t.Logf("headless Chromium did not start (try %d), starting it again: %v", attempt, err)
	}
}

// rowsByName counts the stored events of site by name.
func rowsByName(t *testing.T, s *stack.Stack, site string) map[string]int {
	out := chQuery(t, s.ClickHouse.HTTPURL, "SELECT name, count() FROM events WHERE site = '"+site+"' GROUP BY name FORMAT TSV")
	got := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if name, n, ok := strings.Cut(line, "\t"); ok {
			got[name], _ = strconv.Atoi(n)
		}
	}
	return got
}

// waitRows waits until site's rows by name are exactly want. Counts only
// grow, so a duplicate arriving before want is reached shows as a count
// of 2 and the wait fails.
func waitRows(t *testing.T, s *stack.Stack, site string, want map[string]int) {
	t.Helper()
	eventually(t, 30*time.Second, site+" rows", func() (bool, string) {
		got := rowsByName(t, s, site)
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
	})
}

// TestBrowserBeacons sends events from a page on another origin in real
// headless Chromium, every way a page sends them (a JSON Blob beacon, a
// text beacon, fetch with keepalive and credentials, an <img>), through
// the POP running the edge module to ClickHouse, and counts each exactly
// once; an origin not on a site's list is refused. The same stack then
// carries the edge's other input rules end to end (client event ids,
// HEAD, UTF-8, the props limit), to start one stack rather than two.
func TestBrowserBeacons(t *testing.T) {
	var popURL string
	allowed, other := pageServer(t, &popURL), pageServer(t, &popURL)
	s := startStack(t, stack.Options{EdgeConfig: map[string]string{
		pixel.ConfigCORSOrigins: "locked=" + allowed.URL,
	}})
	popURL = s.PopURL
	ctx := browser(t, 3*time.Minute)
	eval := func(js string) string {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return got
	}
	send := func(kind, site, name string) string {
		t.Helper()
		return eval(fmt.Sprintf("send(%q, %q, %q)", kind, site, name))
	}
	open := func(page *httptest.Server) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/page.html")); err != nil {
			t.Fatalf("open %s: %v", page.URL, err)
		}
	}
	kinds := map[string]string{"beacon-json": "queued", "beacon-text": "queued", "fetch-keepalive": "204", "img": "loaded"}
	once := map[string]int{}
	for kind := range kinds {
		once[kind] = 1
	}

	t.Run("every way a page sends, counted once", func(t *testing.T) {
		open(allowed)
		for _, site := range []string{"open", "locked"} { // the default, and a site whose list has this origin
			for kind, answer := range kinds {
				if got := send(kind, site, kind); got != answer {
					t.Errorf("%s for %s: page saw %q, want %q", kind, site, got, answer)
				}
			}
			waitRows(t, s, site, once)
		}
	})

	t.Run("an origin not on the site's list is refused", func(t *testing.T) {
		open(other)
		// The preflight is refused, so the browser never sends the POST; a
		// text beacon needs no preflight and is refused by the edge.
		if got := send("fetch-keepalive", "locked", "refused-fetch"); !strings.HasPrefix(got, "blocked") {
			t.Errorf("fetch from an origin not on the list: page saw %q", got)
		}
		for _, kind := range []string{"beacon-json", "beacon-text"} {
			send(kind, "locked", "refused-"+kind)
		}
		// What the browser's requests got, asked again by hand: the drop
		// and its reason, and no origin to let the page read it.
		for _, req := range []struct{ method, query, body string }{
			{"OPTIONS", "?site=locked", ""},
			{"POST", "", `{"site":"locked","name":"refused-by-hand"}`},
		} {
			r, _ := http.NewRequest(req.method, s.PopURL+"/e"+req.query, strings.NewReader(req.body))
			r.Header.Set("Origin", other.URL)
			r.Header.Set("Access-Control-Request-Method", "POST")
			resp, body := do(t, r)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Edgepixel-Drop") != wire.DropOriginNotAllowed || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s from %s: %s drop %q allow-origin %q: %s", req.method, other.URL, resp.Status, resp.Header.Get("X-Edgepixel-Drop"), resp.Header.Get("Access-Control-Allow-Origin"), body)
			}
		}
		// The same page may still send for sites without a list; once that
		// event is stored, the beacons sent before it have been delivered
		// (or refused).
		if got := send("beacon-text", "open", "after-refused"); got != "queued" {
			t.Fatalf("beacon for open: %q", got)
		}
		eventually(t, 30*time.Second, "the marker after the refused beacons", func() (bool, string) {
			n := rowsByName(t, s, "open")["after-refused"]
			return n == 1, strconv.Itoa(n)
		})
		if got := rowsByName(t, s, "locked"); fmt.Sprint(got) != fmt.Sprint(once) {
			t.Errorf("locked holds %v, want only the allowed origin's %v", got, once)
		}
		if got := rowsByName(t, s, "open"); fmt.Sprint(got) != fmt.Sprint(map[string]int{"beacon-json": 1, "beacon-text": 1, "fetch-keepalive": 1, "img": 1, "after-refused": 1}) {
			t.Errorf("open holds %v: a beacon counted twice?", got)
		}
	})

	t.Run("a retried event lands once, per site", func(t *testing.T) {
		id, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, site := range []string{"ids-a", "ids-a", "ids-b", "ids-a"} {
			resp, b := post(t, s.PopURL+"/e", "application/json", []byte(`{"site":"`+site+`","name":"retried","event_id":"`+id.String()+`"}`), nil)
			wantStatus(t, resp, b, http.StatusNoContent)
		}
		key, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		array := `[{"site":"ids-a","name":"keyed"},{"site":"ids-a","name":"keyed"},{"site":"ids-b","name":"keyed"}]`
		for range 2 {
			resp, b := post(t, s.PopURL+"/e", "application/json", []byte(array), map[string]string{pixel.HeaderIdempotencyKey: `"` + key.String() + `"`})
			wantStatus(t, resp, b, http.StatusNoContent)
		}
		// A browser retrying: the same event_id twice, by fetch.
		open(allowed)
		browserID := eval(`uuidv7()`)
		for range 2 {
			if got := eval(fmt.Sprintf("send(%q, %q, %q, %q)", "fetch-keepalive", "ids-a", "browser-retried", browserID)); got != "204" {
				t.Fatalf("fetch with event_id %s: %q", browserID, got)
			}
		}
		// A bad id is refused with its reason, not stored.
		v4 := []byte(id.String())
		v4[14] = '4'
		resp, b := post(t, s.PopURL+"/e", "application/json", []byte(`{"site":"ids-a","name":"v4","event_id":"`+string(v4)+`"}`), nil)
		if resp.StatusCode != 400 || resp.Header.Get("X-Edgepixel-Drop") != wire.DropBadEventID {
			t.Errorf("UUIDv4 event_id: %s %s", resp.Status, b)
		}
		// A clock 15 minutes fast was refused, and s.js lost the event
		// (a tester's); now it is stored near the edge's time, once
		// however often it is sent.
		fast, err := event.NewID(time.Now().Add(15*time.Minute).UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			resp, b := post(t, s.PopURL+"/e", "text/plain", []byte(`{"site":"ids-a","name":"fast-clock","event_id":"`+fast.String()+`"}`), nil)
			wantStatus(t, resp, b, http.StatusNoContent)
		}
		waitRows(t, s, "ids-a", map[string]int{"retried": 1, "keyed": 2, "browser-retried": 1, "fast-clock": 1})
		waitRows(t, s, "ids-b", map[string]int{"retried": 1, "keyed": 1})
		if d := chQuery(t, s.ClickHouse.HTTPURL, "SELECT abs(toInt64(toUnixTimestamp(ts)) - toInt64(toUnixTimestamp(now()))) < 480 FROM events WHERE site = 'ids-a' AND name = 'fast-clock'"); d != "1" {
			t.Errorf("the fast clock's event is not stored within 8 minutes of now (%s)", d)
		}
	})

	t.Run("HEAD, UTF-8 and the props limit", func(t *testing.T) {
		r, _ := http.NewRequest("HEAD", s.PopURL+"/p.gif?site=input&e=head", nil)
		resp, _ := do(t, r)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("X-Edgepixel-Drop") != wire.DropHeadRequest {
			t.Errorf("HEAD: %s %q drop %q", resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("X-Edgepixel-Drop"))
		}
		big := `{"site":"input","name":"big","props":{"k":"` + strings.Repeat("a", event.MaxPropsLen) + `"}}`
		resp, b := post(t, s.PopURL+"/e", "application/json", []byte(big), nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Edgepixel-Drop") != wire.DropPropsTooLarge {
			t.Errorf("props over the limit: %s %s", resp.Status, b)
		}
		// Three times the limit as sent, within it once decoded.
		escaped := `{"site":"input","name":"escaped","props":{"k":"` + strings.Repeat(`\u00e9`, event.MaxPropsLen/2-8) + `"}}`
		resp, b = post(t, s.PopURL+"/e", "application/json", []byte(escaped), nil)
		wantStatus(t, resp, b, http.StatusNoContent)

		hdr := map[string]string{"User-Agent": "UA\xff/1", "Referer": "https://r.example/\xc3"}
		resp, b = get(t, s.PopURL+"/p.gif?site=input&e=utf8&url=https%3A%2F%2Fa.example%2F%FF%00", hdr)
		checkPixel(t, resp, b)
		resp, b = get(t, s.PopURL+"/p.gif?site=input&e=utf8-referer", hdr) // the page is the Referer
		checkPixel(t, resp, b)
		resp, b = post(t, s.PopURL+"/e", "text/plain", []byte("{\"site\":\"input\",\"name\":\"utf8-post\",\"url\":\"/\\u0000\xfe\",\"props\":{\"k\":\"\\ud800\"}}"), map[string]string{"User-Agent": "UA"})
		wantStatus(t, resp, b, http.StatusNoContent)
		waitRows(t, s, "input", map[string]int{"escaped": 1, "utf8": 1, "utf8-referer": 1, "utf8-post": 1})
		got := chQuery(t, s.ClickHouse.HTTPURL, "SELECT name, url, user_agent, props FROM events WHERE site = 'input' AND name LIKE 'utf8%' ORDER BY name FORMAT TSV")
		// Invalid bytes become U+FFFD; in a URL, which is stored in one
		// normal form (edge/enrich/pageurl), U+FFFD is then
		// percent-encoded as a browser would serialise it.
		const fffd = "%EF%BF%BD"
		want := "utf8\thttps://a.example/" + fffd + fffd + "\tUA\uFFFD/1\t\n" +
			"utf8-post\t/" + fffd + fffd + "\tUA\t{\"k\":\"\uFFFD\"}\n" +
			"utf8-referer\thttps://r.example/" + fffd + "\tUA\uFFFD/1" // chQuery trims the last empty column
		if got != want {
			t.Errorf("stored strings:\n%q\nwant\n%q", got, want)
		}
	})
}
