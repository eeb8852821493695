// Package mailopen tells, for a pixel in an email or a feed, whether a
// mail proxy or privacy prefetcher fetched it rather than a person opening
// it: such fetches come when the message arrives (or for every message,
// read or not), from the provider's network, and say nothing about the
// reader.
//
// The signals, from what the providers document and email senders
// observe:
//
//   - Gmail fetches every image through its image proxy, whose user agent
//     ends "(via ggpht.com GoogleImageProxy)".
//   - Yahoo Mail (and AOL) fetch through a proxy whose user agent begins
//     "YahooMailProxy".
//   - Apple Mail Privacy Protection downloads every image of every message
//     through Apple's relays (the iCloud Private Relay network) with the
//     user agent cut to exactly "Mozilla/5.0"; Apple Mail's own agent (no
//     "Safari/" token) from Apple's networks (AS714, AS6185) or the relay's
//     egress operated for Apple (AS36183) is the same prefetch.
//   - Outlook.com and Microsoft 365 fetch images and scan links from
//     Microsoft's own network (AS8075); a person reading mail comes from
//     their ISP or employer, so a fetch from AS8075 is marked "outlook".
//   - A feed reader's fetcher (the crawler list's feed readers) is "feed".
//
// A person's open (the desktop Outlook, Thunderbird, a browser showing
// webmail without a proxy) gives "".
package mailopen

import (
	"strings"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
)

// The proxies. They are short lower-case codes, stored as they are.
const (
	Person  = ""
	Apple   = "apple"   // Apple Mail Privacy Protection
	Gmail   = "gmail"   // Gmail's image proxy
	Yahoo   = "yahoo"   // Yahoo Mail's (and AOL's) image proxy
	Outlook = "outlook" // Outlook.com / Microsoft 365's fetcher
	Feed    = "feed"    // a feed reader's fetcher
)

// Input is what the request for the pixel tells.
type Input struct {
	UserAgent string
	// ASN is the client network's autonomous system number, 0 when
	// unknown.
	ASN uint32
	// Bot is the request's bot.Check reason (bot.FeedReader for a feed
	// reader's fetcher), so the user agent is matched against the crawler
	// list once per hit.
	Bot bot.Reason
}

// Networks named above.
const (
	asApple        = 714
	asAppleEngin   = 6185
	asPrivateRelay = 36183
	asMicrosoft    = 8075
)

// Classify returns the proxy that fetched the pixel, or Person. It never
// fails and does not allocate.
func Classify(in Input) string {
	ua := strings.TrimSpace(in.UserAgent)
	switch {
	case strings.Contains(ua, "GoogleImageProxy"):
		return Gmail
	case strings.HasPrefix(ua, "YahooMailProxy"):
		return Yahoo
	case ua == "Mozilla/5.0":
		return Apple
	}
	switch in.ASN {
	case asApple, asAppleEngin, asPrivateRelay:
		if isAppleMail(ua) {
			return Apple
		}
	case asMicrosoft:
		return Outlook
	}
	if in.Bot == bot.FeedReader {
		return Feed
	}
	return Person
}

// Verdict is the bot verdict (edge/enrich/bot) of an email or feed open
// that Classify put in class, given the request's own bot.Check verdict
// v of in, and whether the classification decides it (decided: the
// platform's own verdict, made without knowing the hit is an open, does
// not apply either). The proxies and the prefetcher are programs by their
// user agents and networks, and bot.Check says so; what matters for an
// open is whether a person's reading stands behind the fetch:
//
//   - Gmail and Yahoo fetch a message's images through their proxy when
//     it is opened, not when it arrives (Gmail's "Images Now Showing",
//     December 2013; what email senders observe for both). The user
//     agent is the proxy's, so the verdict resting on it (link_preview)
//     says nothing of the reader: no bot.
//   - Outlook is known by Microsoft's network alone: the verdict without
//     the network (the datacenter reason rests on it), so that a user
//     agent that says program (curl, a crawler on Azure) still does.
//   - Apple Mail Privacy Protection downloads remote content in the
//     background whether or not the message is opened (Apple's "Use Mail
//     Privacy Protection" support article): bot.MailPrefetch, a bot, or
//     v where it scores higher.
//   - A feed reader's fetch and a person's open keep v, undecided.
func Verdict(class string, in bot.Input, v bot.Result) (r bot.Result, decided bool) {
	switch class {
	case Gmail, Yahoo:
		return bot.Result{}, true
	case Outlook:
		in.ASN = 0
		return bot.Check(in), true
	case Apple:
		if p := bot.ReasonResult(bot.MailPrefetch); p.Score >= v.Score {
			return p, true
		}
		return v, true
	}
	return v, false
}

// isAppleMail reports Apple Mail's user agent: WebKit on an Apple system,
// without the "Safari/" token a browser adds.
func isAppleMail(ua string) bool {
	return strings.Contains(ua, "AppleWebKit/") && !strings.Contains(ua, "Safari/") &&
		(strings.Contains(ua, "Macintosh") || strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"))
}
