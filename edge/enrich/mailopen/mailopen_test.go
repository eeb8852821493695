package mailopen

import (
	"testing"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
)

func TestClassify(t *testing.T) {
	const (
		appleMail  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
		iosMail    = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
		safari     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
		chrome     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		outlookApp = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
	)
	for _, tc := range []struct {
		in   Input
		want string
	}{
		{Input{UserAgent: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", ASN: 15169}, Gmail},
		{Input{UserAgent: "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", ASN: 36647}, Yahoo},
		{Input{UserAgent: "Mozilla/5.0", ASN: 36183}, Apple},
		{Input{UserAgent: "Mozilla/5.0"}, Apple},
		{Input{UserAgent: appleMail, ASN: 714}, Apple},
		{Input{UserAgent: iosMail, ASN: 36183}, Apple},
		{Input{UserAgent: appleMail, ASN: 7922}, Person}, // Apple Mail at home, MPP off
		{Input{UserAgent: safari, ASN: 714}, Person},     // a browser on Apple's network
		{Input{UserAgent: chrome, ASN: 8075}, Outlook},
		{Input{UserAgent: outlookApp, ASN: 3320}, Person},
		{Input{UserAgent: chrome, ASN: 3320}, Person},
		{Input{UserAgent: "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 16 subscribers; )", Bot: bot.FeedReader}, Feed},
		{Input{}, Person},
	} {
		if got := Classify(tc.in); got != tc.want {
			t.Errorf("Classify(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// An open's bot verdict follows who fetched it: Gmail's proxy got 100
// (link_preview) and Outlook's 60 (datacenter) though a person's open
// stands behind them, and Apple's prefetch 0 though none may (found by a
// new-user tester).
func TestVerdict(t *testing.T) {
	const (
		gmail  = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
		chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	)
	for _, tc := range []struct {
		in      bot.Input
		want    bot.Reason
		decided bool
	}{
		{bot.Input{UserAgent: gmail, ASN: 15169}, bot.None, true},
		{bot.Input{UserAgent: "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", ASN: 36647}, bot.None, true},
		{bot.Input{UserAgent: chrome, ASN: 8075}, bot.None, true},
		{bot.Input{UserAgent: "curl/8.5.0", ASN: 8075}, bot.HTTPClient, true}, // a program on Azure says so
		{bot.Input{UserAgent: "Mozilla/5.0", ASN: 36183}, bot.MailPrefetch, true},
		{bot.Input{UserAgent: "Mozilla/5.0"}, bot.MailPrefetch, true},
		{bot.Input{UserAgent: "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 16 subscribers; )"}, bot.FeedReader, false},
		{bot.Input{UserAgent: chrome, ASN: 3320}, bot.None, false},
		{bot.Input{UserAgent: chrome, ASN: 16509}, bot.Datacenter, false}, // AWS: no mail proxy known there
	} {
		v := bot.Check(tc.in)
		class := Classify(Input{UserAgent: tc.in.UserAgent, ASN: tc.in.ASN, Bot: v.Reason})
		got, decided := Verdict(class, tc.in, v)
		if got.Reason != tc.want || got != bot.ReasonResult(tc.want) || decided != tc.decided {
			t.Errorf("%q AS%d (%s): %+v %s decided %v, want %s decided %v", tc.in.UserAgent, tc.in.ASN, class, got, got.Reason, decided, tc.want, tc.decided)
		}
	}
	if !bot.ReasonResult(bot.MailPrefetch).IsBot() {
		t.Error("a mail prefetch is not a bot: bots=exclude would keep it")
	}
}

func TestClassifyAllocs(t *testing.T) {
	in := Input{UserAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", ASN: 3320}
	if n := testing.AllocsPerRun(100, func() { Classify(in) }); n != 0 {
		t.Errorf("Classify allocates %v times", n)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("Mozilla/5.0", uint32(714))
	f.Add("YahooMailProxy", uint32(0))
	f.Fuzz(func(t *testing.T, ua string, asn uint32) {
		switch got := Classify(Input{UserAgent: ua, ASN: asn}); got {
		case Person, Apple, Gmail, Yahoo, Outlook, Feed:
		default:
			t.Fatalf("Classify(%q, %d) = %q", ua, asn, got)
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	in := Input{UserAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", ASN: 3320}
	b.ReportAllocs()
	for b.Loop() {
		Classify(in)
	}
}
