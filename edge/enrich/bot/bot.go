// Package bot scores how likely a hit was made by a program rather than by
// a person: known crawlers and tools by user agent (the
// crawler-user-agents list), headless and automated browsers, prefetch and
// prerender requests, and networks of hosting providers. A bot is stored
// and marked with its score and reason, never dropped, so that an owner
// can reclassify later.
//
// Tables: data/crawler-user-agents.json (MIT, npm crawler-user-agents) and
// data/datacenter-asn.txt (MIT, X4BNet lists_vpn), compiled into tables.go
// by edge/enrich/internal/gen; see data/SOURCE.md.
package bot

//go:generate go run ../internal/gen -dir ..

import (
	"strings"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Reason is the one signal a score rests on: the strongest found. The
// numbers are stable: they may be stored.
type Reason uint8

const (
	None        Reason = iota // no sign of a program
	Crawler                   // a listed crawler: search engine, SEO, archiver, ads
	AICrawler                 // a listed AI crawler or assistant fetcher
	FeedReader                // a listed feed reader
	LinkPreview               // a listed link-preview fetcher (chat apps, social sites)
	Monitor                   // a listed uptime or performance monitor
	Scanner                   // a listed security or site scanner
	HTTPClient                // a listed HTTP library or command-line tool
	Automation                // a headless or automated browser (HeadlessChrome, Selenium, ...)
	NoUserAgent               // no User-Agent at all
	BotWord                   // an unlisted user agent calling itself a bot, crawler or spider
	URLInUA                   // an unlisted user agent with a URL in it: a crawler's contact page
	NotBrowser                // not a browser's "Mozilla/5.0 (...)": an app, a mail client, an old phone; below IsBot alone
	Prefetch                  // a prefetch: the page was not shown (yet)
	Prerender                 // a prerender: the page was not shown (yet)
	Preview                   // a preview thumbnail (Safari's X-Purpose: preview)
	Datacenter                // from a hosting provider's or VPN's network (by ASN)
	// MailPrefetch is an email open fetched by a privacy prefetcher
	// (Apple Mail Privacy Protection) when the message arrived, read or
	// not. Check never gives it: edge/pixel does, for an open that
	// edge/enrich/mailopen classifies so (mailopen.Verdict).
	MailPrefetch
	numReasons
)

var reasonNames = [numReasons]string{
	"", "crawler", "ai_crawler", "feed_reader", "link_preview", "monitor", "scanner", "http_client",
	"automation", "no_user_agent", "bot_word", "url_in_ua", "not_browser", "prefetch", "prerender",
	"preview", "datacenter", "mail_prefetch",
}

// reasonScores is each reason's score: 100 for a program that says so,
// less where a person may be behind it (a prefetch becomes a visit when
// shown; people use VPNs hosted in datacenters; apps send odd agents). A
// mail prefetch scores as a prefetch: a bot (event.BotScoreMin), since
// it comes whether or not the message is read, though its reader may
// open it later.
var reasonScores = [numReasons]uint8{
	0, 100, 100, 100, 100, 100, 100, 100,
	100, 90, 90, 80, 40, 70, 70,
	70, 60, 70,
}

// ReasonResult is the verdict that rests on r alone: its score and r.
func ReasonResult(r Reason) Result {
	if r >= numReasons {
		return Result{}
	}
	return verdict(r)
}

// String returns the reason's short code ("crawler", "prefetch", ...);
// "" for None.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Result is a verdict: Score from 0 (no sign of a program) to 100 (a
// program that says so), and the Reason for it.
type Result struct {
	Score  uint8
	Reason Reason
}

func verdict(r Reason) Result { return Result{Score: reasonScores[r], Reason: r} }

// IsBot reports whether the score says program: event.BotScoreMin or
// more.
func (r Result) IsBot() bool { return r.Score >= event.BotScoreMin }

// Input is what a request tells about its client. Header values are as
// received ("" when absent).
type Input struct {
	UserAgent string
	// SecPurpose is Sec-Purpose (Fetch standard: "prefetch",
	// "prefetch;prerender"); Purpose and XPurpose are the older Purpose
	// and X-Purpose (Chrome, Safari: "prefetch", "preview"); XMoz is
	// Firefox's X-Moz ("prefetch").
	SecPurpose, Purpose, XPurpose, XMoz string
	// SecCHUA is the Sec-CH-UA client hint: the browser's brands.
	SecCHUA string
	// ASN is the client network's autonomous system number, 0 when
	// unknown.
	ASN uint32
}

// Check scores a request. It never fails and does not allocate.
func Check(in Input) Result {
	best := UserAgent(in.UserAgent)
	if r := purpose(in); r != None {
		best = stronger(best, r)
	}
	if containsFold(in.SecCHUA, "headless") {
		best = stronger(best, Automation)
	}
	if in.ASN != 0 && IsDatacenter(in.ASN) {
		best = stronger(best, Datacenter)
	}
	return best
}

// stronger returns the verdict of r if it scores above v, else v.
func stronger(v Result, r Reason) Result {
	if reasonScores[r] > v.Score {
		return verdict(r)
	}
	return v
}

// purpose reads the prefetch and preview headers.
func purpose(in Input) Reason {
	for _, h := range [...]string{in.SecPurpose, in.Purpose, in.XPurpose, in.XMoz} {
		switch {
		case h == "":
		case containsFold(h, "prerender"):
			return Prerender
		case containsFold(h, "prefetch"):
			return Prefetch
		case containsFold(h, "preview"):
			return Preview
		}
	}
	return None
}

// UserAgent scores a User-Agent header alone.
func UserAgent(ua string) Result {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return verdict(NoUserAgent)
	}
	if i, ok := crawlers.Find(ua); ok {
		return verdict(crawlerReasons[crawlers.Val[i]])
	}
	if hasBotWord(ua) {
		return verdict(BotWord)
	}
	if strings.Contains(ua, "http://") || strings.Contains(ua, "https://") || strings.Contains(ua, "+http") {
		return verdict(URLInUA)
	}
	if !strings.HasPrefix(ua, "Mozilla/") && !strings.HasPrefix(ua, "Opera/") {
		return verdict(NotBrowser)
	}
	return Result{}
}

// IsDatacenter reports whether asn belongs to a hosting provider, cloud
// or VPN network (data/datacenter-asn.txt).
func IsDatacenter(asn uint32) bool { return datacenterASNs.Contains(asn) }

// hasBotWord reports whether ua calls itself a bot, crawler or spider, in
// any case; "CUBOT", a phone brand, is not one.
func hasBotWord(ua string) bool {
	for i := 0; i+3 <= len(ua); i++ {
		switch ua[i] | 0x20 {
		case 'b':
			if equalFold3(ua[i:], "bot") && !(i >= 2 && equalFold3(ua[i-2:], "cub")) {
				return true
			}
		case 'c':
			if hasPrefixFold(ua[i:], "crawl") {
				return true
			}
		case 's':
			if hasPrefixFold(ua[i:], "spider") {
				return true
			}
		}
	}
	return false
}

func equalFold3(s, w string) bool { return hasPrefixFold(s, w) }

// hasPrefixFold reports whether s begins with the lower-case ASCII w,
// ignoring ASCII case.
func hasPrefixFold(s, w string) bool {
	if len(s) < len(w) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains the lower-case ASCII w, ignoring
// ASCII case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if hasPrefixFold(s[i:], w) {
			return true
		}
	}
	return false
}
