package bot

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	gen "github.com/edgepixel/edgepixel/edge/enrich/internal/gen/lib"
)

const (
	chromeWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	safariIOS  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	firefoxLin = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in   Input
		want Reason
	}{
		{Input{UserAgent: chromeWin}, None},
		{Input{UserAgent: safariIOS}, None},
		{Input{UserAgent: firefoxLin}, None},
		{Input{UserAgent: "Mozilla/5.0 (Linux; Android 14; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"}, None},
		{Input{UserAgent: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, Crawler},
		{Input{UserAgent: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"}, Crawler},
		{Input{UserAgent: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"}, AICrawler},
		{Input{UserAgent: "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"}, LinkPreview},
		{Input{UserAgent: "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 16 subscribers; )"}, FeedReader},
		{Input{UserAgent: "curl/8.5.0"}, HTTPClient},
		{Input{UserAgent: "python-requests/2.32.3"}, HTTPClient},
		{Input{UserAgent: "Go-http-client/1.1"}, HTTPClient},
		{Input{UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"}, Automation},
		{Input{UserAgent: "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"}, Monitor},
		{Input{UserAgent: ""}, NoUserAgent},
		{Input{UserAgent: "   "}, NoUserAgent},
		{Input{UserAgent: "Mozilla/5.0 (compatible; MyNewCrawler/0.1)"}, BotWord},
		{Input{UserAgent: "Mozilla/5.0 (compatible; Zyxqw/1.0; +https://zyxqw.example/about)"}, URLInUA},
		{Input{UserAgent: "SomeApp/3.2 (iPhone; iOS 17.1)"}, NotBrowser},
		{Input{UserAgent: "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"}, NotBrowser},
		// Headers.
		{Input{UserAgent: chromeWin, SecPurpose: "prefetch"}, Prefetch},
		{Input{UserAgent: chromeWin, SecPurpose: "prefetch;prerender"}, Prerender},
		{Input{UserAgent: chromeWin, Purpose: "prefetch"}, Prefetch},
		{Input{UserAgent: firefoxLin, XMoz: "prefetch"}, Prefetch},
		{Input{UserAgent: safariIOS, XPurpose: "preview"}, Preview},
		{Input{UserAgent: chromeWin, SecCHUA: `"HeadlessChrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`}, Automation},
		{Input{UserAgent: chromeWin, SecCHUA: `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`}, None},
		// Networks: AWS (16509), Hetzner (24940); a crawler's own reason wins.
		{Input{UserAgent: chromeWin, ASN: 16509}, Datacenter},
		{Input{UserAgent: chromeWin, ASN: 24940}, Datacenter},
		{Input{UserAgent: chromeWin, ASN: 3320}, None}, // Deutsche Telekom
		{Input{UserAgent: "curl/8.5.0", ASN: 16509}, HTTPClient},
	} {
		got := Check(tc.in)
		if got.Reason != tc.want || got.Score != reasonScores[tc.want] {
			t.Errorf("Check(%+v) = %+v (%s), want %s", tc.in, got, got.Reason, tc.want)
		}
	}
}

// TestCrawlerInstances checks the list's own sample user agents are
// caught, every one.
func TestCrawlerInstances(t *testing.T) {
	raw, err := os.ReadFile("data/crawler-user-agents.json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Pattern   string
		Instances []string
	}
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	n, missed := 0, 0
	for _, e := range entries {
		for _, ua := range e.Instances {
			n++
			if !UserAgent(ua).IsBot() {
				missed++
				t.Logf("missed (pattern %q): %q", e.Pattern, ua)
			}
		}
	}
	if n < 1000 || missed > 0 {
		t.Errorf("%d of %d sample crawler user agents missed", missed, n)
	}
}

func TestReasonString(t *testing.T) {
	for r := None + 1; r < numReasons; r++ {
		if r.String() == "" || len(r.String()) > 16 {
			t.Errorf("reason %d: %q", r, r.String())
		}
	}
	if Reason(200).String() != "unknown" {
		t.Error(Reason(200).String())
	}
}

func TestCheckAllocs(t *testing.T) {
	in := Input{UserAgent: chromeWin, SecCHUA: `"Chromium";v="131"`, ASN: 3320}
	if n := testing.AllocsPerRun(100, func() { Check(in) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
}

func TestTablesCurrent(t *testing.T) {
	src, err := gen.Bot("data")
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("tables.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, have) {
		t.Error("tables.go is stale: run go run ./edge/enrich/internal/gen")
	}
}

func FuzzCheck(f *testing.F) {
	f.Add(chromeWin, "prefetch", `"Chromium";v="1"`, uint32(16509))
	f.Add("", "", "", uint32(0))
	f.Add("bOt", "PRERENDER", "headless", uint32(1))
	f.Fuzz(func(t *testing.T, ua, purpose, chua string, asn uint32) {
		r := Check(Input{UserAgent: ua, SecPurpose: purpose, SecCHUA: chua, ASN: asn})
		if r.Reason >= numReasons || r.Score > 100 || r.Score != reasonScores[r.Reason] {
			t.Fatalf("Check(%q, %q, %q, %d) = %+v", ua, purpose, chua, asn, r)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	for _, ua := range []string{chromeWin, safariIOS, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"} {
		in := Input{UserAgent: ua, ASN: 3320}
		b.Run("", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Check(in)
			}
		})
	}
}
