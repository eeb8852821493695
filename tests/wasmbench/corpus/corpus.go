package corpus

const (
	uaChromeWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaEdge       = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86"
	uaSafariMac  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
	uaFirefox    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaIPhone     = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
	uaAndroid    = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
	uaSamsung    = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"
	uaFacebookIA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/480.0.0.47.109;FBBV/1]"
	uaGooglebot  = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaHeadless   = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"
	uaGmailProxy = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
	uaAppleMail  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)

// Hits is a realistic mix of hits: mostly browsers on plain pages, some
// from search and social, campaign links from email and ads, a few bots,
// prefetches and mail proxies.
var Hits = []Hit{
	{URL: "https://www.example.com/", Referrer: "https://www.google.com/", UserAgent: uaChromeWin, ASN: 3320},
	{URL: "https://www.example.com/blog/2025/11/launch", Referrer: "https://www.example.com/", UserAgent: uaIPhone, ASN: 7922},
	{URL: "https://www.example.com/pricing", Referrer: "https://www.example.com/blog/2025/11/launch", UserAgent: uaAndroid, ASN: 21928},
	{URL: "https://www.example.com/docs/getting-started#install", UserAgent: uaSafariMac, ASN: 7018},
	{URL: "https://shop.example.com/p/42?color=blue&size=m", Referrer: "https://www.bing.com/search?q=shoes", UserAgent: uaEdge, ASN: 3215},
	{URL: "https://www.example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=nov_2025", UserAgent: uaFirefox, ASN: 3320},
	{URL: "https://www.example.com/landing?gclid=Cj0KCQiA4L67BhDUARIsADWrl7G&utm_source=google&utm_medium=cpc", Referrer: "https://www.google.de/", UserAgent: uaSamsung, ASN: 3209},
	{URL: "https://www.example.com/post?fbclid=IwAR2xYz", Referrer: "https://l.facebook.com/", UserAgent: uaFacebookIA, ASN: 7922},
	{URL: "https://www.example.com/about", Referrer: "https://news.ycombinator.com/item?id=4242", UserAgent: uaChromeWin, ASN: 701},
	{URL: "https://www.example.com/careers", Referrer: "https://t.co/AbCdEf", UserAgent: uaIPhone, ASN: 22394},
	{URL: "https://www.example.com/", Referrer: "https://duckduckgo.com/", UserAgent: uaFirefox, ASN: 5089},
	{URL: "https://www.example.com/blog/", Referrer: "https://chatgpt.com/", UserAgent: uaSafariMac, ASN: 7922},
	{URL: "https://www.example.com/?utm_source=mailchimp&amp;utm_medium=email&amp;utm_campaign=weekly&amp;mc_eid=1a2b3c", UserAgent: uaAppleMail, ASN: 714},
	{URL: "https://www.example.com/open.gif?utm_campaign=weekly", UserAgent: uaGmailProxy, ASN: 15169},
	{URL: "https://www.example.com/", UserAgent: uaGooglebot, ASN: 15169},
	{URL: "https://www.example.com/pricing", UserAgent: uaHeadless, ASN: 16509},
	{URL: "https://www.example.com/next-page", Referrer: "https://www.example.com/", UserAgent: uaChromeWin, SecPurpose: "prefetch;prerender", ASN: 3320},
	{URL: "https://www.example.com/search?q=caf%c3%a9&page=2", Referrer: "https://www.example.com/", UserAgent: uaChromeWin, ASN: 3320},
	{URL: "https://www.example.com/", Referrer: "http://best-seo-offer.com/", UserAgent: uaChromeWin, ASN: 14061},
	{URL: "https://www.example.com/docs/api", Referrer: "https://github.com/example/repo", UserAgent: uaFirefox, ASN: 3320},
	// A mailer's Unicode spelling of an international host, and a referrer
	// under a two-label public suffix.
	{URL: "https://Bücher.Example.de/angebote?utm_source=newsletter", Referrer: "https://www.amazon.co.uk/gp/", UserAgent: uaSafariMac, ASN: 3320},
}
