package tests

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// artifactsDir is where a test saves what a person may want to look at
// (screenshots): $EDGEPIXEL_ARTIFACTS/TEST, else .edgepixel/artifacts/TEST
// in the checkout. It is kept after the test.
func artifactsDir(t *testing.T) string {
	base := os.Getenv("EDGEPIXEL_ARTIFACTS")
	if base == "" {
		base = filepath.Join(root, ".edgepixel", "artifacts")
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// poll waits until the JavaScript expression js is true.
func poll(ctx context.Context, t *testing.T, what, js string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 3000)`))
		t.Fatalf("%s: %v\npage shows:\n%s", what, err, state)
	}
}

func textOf(ctx context.Context, t *testing.T, js string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return s
}

// dashboardLogin opens the dashboard and logs in through its form.
func dashboardLogin(ctx context.Context, t *testing.T, s *stack.Stack, path string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.DashboardURL+path)); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}
	poll(ctx, t, "login form", `!document.getElementById("login").hidden`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), s.DashboardToken)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#loginform button[type="submit"]`))); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "logged in", `!document.getElementById("app").hidden`)
}

// dashboardShowsLiveCount logs in to the dashboard in headless Chromium,
// checks it shows the stored count of site demo, then sends one more
// pixel hit and checks the page updates by itself over the WebSocket.
func dashboardShowsLiveCount(t *testing.T, s *stack.Stack) {
	ctx := browser(t, 90*time.Second)
	total, err := strconv.Atoi(chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'demo' FORMAT TSV"))
	if err != nil {
		t.Fatal(err)
	}
	dashboardLogin(ctx, t, s, "/?site=demo")
	shows := func(n int) string {
		return `document.getElementById("total").textContent === "` + strconv.Itoa(n) + `"`
	}
	poll(ctx, t, "the stored count", shows(total))
	sent := time.Now()
	resp, body := get(t, pixelURL(s.PopURL, "demo", "https://example.com/from-browser-test", ""), nil)
	checkPixel(t, resp, body)
	poll(ctx, t, "the live count after a hit", shows(total+1))
	t.Logf("dashboard showed the new hit %v after it was sent", time.Since(sent).Round(time.Millisecond))
}

// TestDashboardInBrowser uses the dashboard as a person would, in headless
// Chromium: log in, watch the live tiles move as hits go through the POP,
// switch the range, filter by clicking a row (the filter shows in the URL
// and every table), clear it, export a table as CSV, and look at it on a
// desktop and on a 390 px phone (PNG screenshots in artifactsDir).
func TestDashboardInBrowser(t *testing.T) {
	// Today's visitor salt, so that events carry visitor ids.
	var r [16]byte
	rand.Read(r[:])
	began := time.Now()
	day := privacy.Day(began)
	s := startStack(t, stack.Options{EdgeSecrets: map[string]string{privacy.SaltKey(day): privacy.NewSalt(day, r).String()}})
	art := artifactsDir(t)
	// Two visitors: one on Chrome (the /pricing hits), one on Firefox.
	const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	hitAs := func(ua, page, ref string) {
		resp, body := get(t, pixelURL(s.PopURL, "shop.example", page, ref), map[string]string{"User-Agent": ua})
		checkPixel(t, resp, body)
	}
	hit := func(page, ref string) { hitAs(firefox, page, ref) }
	for i := range 6 {
		hitAs(chrome, "https://shop.example/pricing", "https://news.ycombinator.com/item")
		if i%2 == 0 {
			hit("https://shop.example/a/very/long/path/that/keeps/going/and/going/to/check/wrapping/on/phones/"+strconv.Itoa(i), "")
		}
	}
	eventually(t, 30*time.Second, "9 rows", func() (bool, string) {
		n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'shop.example' FORMAT TSV")
		return n == "9", n
	})

	ctx := browser(t, 3*time.Minute)
	// A parameter the API does not filter by (misspelt, entry_page, or a tag added to a
	// link) is not sent, which the API would refuse: it is shown as
	// ignored and dropped from the URL, and the figures load.
	dashboardLogin(ctx, t, s, "/?site=shop.example&range=today&contry=DE&entry_page=/")
	poll(ctx, t, "live count 9", `document.getElementById("total").textContent === "9"`)
	poll(ctx, t, "unknown parameter shown as ignored", `document.getElementById("filters").innerText.includes("ignored: contry, entry_page") && !location.search.includes("contry") && !location.search.includes("entry_page")`)
	// The live visitors tile: the same two visitors, stored seconds ago,
	// and its help says which events are not visitors.
	poll(ctx, t, "live visitors 2", `document.getElementById("visitors").textContent === "2"`)
	poll(ctx, t, "live visitors help", `document.getElementById("visitorshelp").textContent.includes("aggregate consent tier")`)
	poll(ctx, t, "pageviews tile", `(document.querySelector('[data-metric="pageviews"] .num')||{}).textContent === "9"`)
	// The period the tiles compare with is named: today's hours so far
	// (whole hours, the current one included) against the same hours of
	// yesterday, which end at today's 00:00 in the day's last hour (a
	// CI run at 23:52 UTC expected yesterday's date there). The page's
	// hour is the one the test began in or the one it is in now.
	compared := func(now time.Time) string {
		now = now.UTC()
		return "compared with " + now.AddDate(0, 0, -1).Format(time.DateOnly) + " 00:00 – " +
			now.Truncate(time.Hour).Add(time.Hour-24*time.Hour).Format("2006-01-02 15:04") + " UTC"
	}
	poll(ctx, t, "previous period named", `(t => t.includes("`+compared(began)+`") || t.includes("`+compared(time.Now())+`"))(document.getElementById("rangeinfo").textContent)`)
	poll(ctx, t, "pages table", `!!document.querySelector('section[data-dim="page"] td.v button')`)
	// The visitor numbers, against the stored events: two visitors, one
	// visit each (seconds apart), neither a bounce (several pageviews).
	if got := chQuery(t, s.ClickHouse.HTTPURL, "SELECT uniqExact(visitor_id), groupUniqArray(browser) FROM events WHERE site = 'shop.example' AND visitor_id != 0 FORMAT TSV"); !strings.HasPrefix(got, "2\t") {
		t.Fatalf("stored visitors and browsers: %q, want 2 visitors", got)
	}
	poll(ctx, t, "visitors tile", `document.querySelector('[data-metric="visitors"] .num').textContent === "2"`)
	poll(ctx, t, "visits tile", `document.querySelector('[data-metric="visits"] .num').textContent === "2"`)
	poll(ctx, t, "bounce rate tile", `document.querySelector('[data-metric="bounce_rate"] .num').textContent === "0.0%"`)
	poll(ctx, t, "views per visit tile", `document.querySelector('[data-metric="views_per_visit"] .num').textContent === "4.50"`)
	poll(ctx, t, "browsers table", `(t => t.includes("Chrome") && t.includes("Firefox"))(document.querySelector('section[data-dim="browser"]').innerText)`)
	// Entry and exit pages count visits: the Chrome visitor's starts and
	// ends at /pricing, the Firefox visitor's at the long paths 0 and 4.
	poll(ctx, t, "entry pages table", `(s => !!s && (t => t.includes("Visits") && t.includes("/pricing") && t.includes("/phones/0") && !t.includes("/phones/4"))(s.innerText))(document.querySelector('section[data-dim="entry_page"] table'))`)
	poll(ctx, t, "exit pages table", `(s => !!s && (t => t.includes("/pricing") && t.includes("/phones/4") && !t.includes("/phones/0"))(s.innerText))(document.querySelector('section[data-dim="exit_page"] table'))`)
	for _, dim := range []string{"os", "device", "channel", "region"} {
		poll(ctx, t, dim+" table", `!!document.querySelector('section[data-dim="`+dim+`"] table, section[data-dim="`+dim+`"] p')`)
	}

	// Live: three more hits move the tiles without a reload. The page is
	// stored escaped (/live/caf%C3%A9) and shown as typed; a hash route
	// as s.js's data-hash sends it (/live/%23/cart) is shown with its '#'.
	hit("https://shop.example/live/café", "")
	hit("https://shop.example/live/café", "")
	hit("https://shop.example/live/%23/cart", "")
	poll(ctx, t, "live count 12", `document.getElementById("total").textContent === "12"`)
	poll(ctx, t, "events per second above 0", `parseFloat(document.getElementById("eps").textContent) > 0`)
	poll(ctx, t, "pages viewed now", `document.getElementById("pagesnow").innerText.includes("/live/café")`)
	poll(ctx, t, "live visitors still 2 (the Firefox visitor again)", `document.getElementById("visitors").textContent === "2"`)

	// Filter by clicking the /pricing row: the URL and the tiles follow.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//section[@data-dim="page"]//button[text()="/pricing"]`))); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "filter in the URL", `location.search.includes("page=%2Fpricing")`)
	poll(ctx, t, "filtered pageviews", `(document.querySelector('[data-metric="pageviews"] .num')||{}).textContent === "6"`)
	poll(ctx, t, "filter chip", `document.getElementById("filters").innerText.includes("/pricing")`)
	// The clicked row is gone; the keyboard's focus is on the new filter's clear button.
	poll(ctx, t, "focus on the filter's chip", `document.activeElement && document.activeElement.dataset.dim === "page"`)
	poll(ctx, t, "filtered visits", `(document.querySelector('[data-metric="visits"] .num')||{}).textContent === "1"`)
	poll(ctx, t, "filtered sources", `document.querySelector('section[data-dim="referrer"]').innerText.includes("news.ycombinator.com")`)

	// Switch the range to realtime and back to 7 days.
	for _, r := range []string{"realtime", "7d"} {
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#range"), r)); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("range").dispatchEvent(new Event("change"))`)); err != nil {
			t.Fatal(err)
		}
		poll(ctx, t, "range "+r+" in the URL", `location.search.includes("range=`+r+`")`)
		poll(ctx, t, "range "+r+" figures", `(document.querySelector('[data-metric="pageviews"] .num')||{}).textContent === "6"`)
		// The chart's time axis, in UTC: minutes for realtime, each of
		// the 7 days (yesterday's among them, even past midnight).
		want := `/^\d\d:\d\d$/.test(s)`
		if r == "7d" {
			want = `s === "` + time.Now().UTC().AddDate(0, 0, -1).Format("Jan 2") + `"`
		}
		poll(ctx, t, "range "+r+" time axis", `[...document.querySelectorAll("#chart ~ .xaxis .tick")].map(e => e.textContent).filter(s => `+want+`).length >= (`+strconv.Quote(r)+` === "7d" ? 1 : 3)`)
	}
	poll(ctx, t, "the time axis spread along the chart", `(ts => ts.length > 1 && ts[ts.length-1].offsetLeft > ts[0].offsetLeft + ts[0].parentElement.clientWidth / 2)([...document.querySelectorAll("#chart ~ .xaxis .tick")])`)
	poll(ctx, t, "the live chart's axis", `document.querySelector("#rolling ~ .xaxis").innerText.includes("now") && document.querySelector("#rolling ~ .ymax").textContent !== ""`)

	// Export the pages table as CSV, with the page's own cookie.
	csv, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => { const a = document.querySelector('section[data-dim="page"] a.csv'); const r = await fetch(a.href); return r.status + "\n" + await r.text(); })()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(csv, "200\npage,visitors,pageviews,events\n/pricing,1,6,6") {
		t.Errorf("CSV export:\n%s", csv)
	}

	// Clear the filter.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#filters button`))); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "filter cleared", `!location.search.includes("page=") && (document.querySelector('[data-metric="pageviews"] .num')||{}).textContent === "12"`)
	poll(ctx, t, "focus on the overview once no filter is left", `document.activeElement && document.activeElement.id === "stats-h"`)
	poll(ctx, t, "each CSV link named by its table", `document.querySelector('section[data-dim="page"] a.csv').getAttribute("aria-label") === "Pages as CSV"`)
	poll(ctx, t, "a page shown decoded", `document.querySelector('section[data-dim="page"]').innerText.includes("/live/café")`)
	poll(ctx, t, "a hash route shown with its '#'", `document.querySelector('section[data-dim="page"]').innerText.includes("/live/#/cart")`)
	if got := chQuery(t, s.ClickHouse.HTTPURL, "SELECT countIf(path = '/live/caf%C3%A9'), countIf(path = '/live/%23/cart') FROM events FORMAT TSV"); got != "2\t1" {
		t.Errorf("stored /live/caf%%C3%%A9 and /live/%%23/cart: %q rows, want 2 and 1", got)
	}

	shot := func(name string, width, height int64, mobile bool) {
		var opts []chromedp.EmulateViewportOption
		if mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height, opts...)); err != nil {
			t.Fatal(err)
		}
		if mobile {
			// Nothing may be wider than the phone.
			if w := textOf(ctx, t, `String(document.documentElement.scrollWidth)`); w != strconv.Itoa(int(width)) {
				t.Errorf("at %d px the page is %s px wide", width, w)
			}
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(art, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shot("dashboard-desktop.png", 1280, 900, false)
	shot("dashboard-phone.png", 390, 844, true)
	t.Logf("screenshots in %s", art)

	// A site name in another case (they are case-sensitive) has no
	// events: the page says so and names the sites that have some.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.DashboardURL+"/?site=Shop.example&range=today")); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "a mistyped site named", `(s => s.includes('No events are stored for the site "Shop.example". Site names are case-sensitive. Sites with events: ') && /\bshop\.example\b/.test(s))(document.getElementById("chartinfo").textContent)`)
}
