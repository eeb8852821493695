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
