package tests

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/tests/stack"
)

// dashboardShowsLiveCount opens the dashboard in headless Chromium, checks
// it shows the stored total, then sends one more pixel hit and checks the
// page updates by itself over the WebSocket, without a reload.
func dashboardShowsLiveCount(t *testing.T, s *stack.Stack, total int) {
	ctx := browser(t, 60*time.Second)

	want := strconv.Itoa(total)
	shows := func(n string) chromedp.Action[bool] {
		return chromedp.Poll[bool](`(document.getElementById("total") || {}).textContent === "`+n+`"`,
			chromedp.WithPollingInterval(20*time.Millisecond))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.AggregatorURL+"/")); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}
	if _, err := chromedp.Run(ctx, shows(want)); err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`String((document.getElementById("total") || {}).textContent)`))
		t.Fatalf("dashboard never showed total %s (shows %q): %v", want, shown, err)
	}

	sent := time.Now()
	resp, body := get(t, pixelURL(s.PopURL, "demo", "https://example.com/from-browser-test", ""), nil)
	checkPixel(t, resp, body)
	want = strconv.Itoa(total + 1)
	if _, err := chromedp.Run(ctx, shows(want)); err != nil {
		t.Fatalf("dashboard did not update to %s by itself: %v", want, err)
	}
	t.Logf("dashboard showed the new hit %v after it was sent", time.Since(sent).Round(time.Millisecond))
	site, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-site="demo"] .count`)))
	if err != nil || site == "" {
		t.Errorf("no per-site count for demo: %q %v", site, err)
	}
	if dir := os.Getenv("EDGEPIXEL_SCREENSHOT_DIR"); dir != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90)); err == nil {
			os.WriteFile(dir+"/dashboard.png", png, 0o644)
		}
	}
}
