// Package referrer tells where a visit came from: the referring host and
// its registrable domain, the channel (direct, internal, search, social,
// email, paid, referral), the search engine, social network, AI assistant
// or webmail's name, and whether the referrer is a known referrer spammer.
//
// The names come from Matomo's searchengine-and-social-list, the spam
// hosts from Matomo's referrer-spam-list (both CC0), webmail hosts and
// Android app ids from short lists of our own; all in data/, compiled
// into tables.go by edge/enrich/internal/gen (see data/SOURCE.md).
// Registrable domains follow the Public Suffix List (data/, read by
// publicSuffix).
package referrer

//go:generate go run ../internal/gen -dir ..

import (
	"strings"

	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/shared/event"
)

// Channel is the kind of source a visit came from. The numbers are
// stable: they may be stored.
type Channel uint8

const (
	Direct   Channel = iota // no referrer and no campaign
	Internal                // from another page of the same site (same registrable domain)
	Search                  // a search engine's results
	Social                  // a social network or messenger
	Email                   // an email: utm_medium email, a webmail or mail app referrer
	Paid                    // an ad: a paid utm_medium (cpc, ppc, paid*, ...) or an ad click id
	Referral                // any other site (AI assistants included, by name)
)

var channelNames = event.Channels

// String returns the channel's lower-case name.
func (c Channel) String() string {
	if int(c) < len(channelNames) {
		return channelNames[c]
	}
	return "unknown"
}

// Input is what a hit knows about its origin.
type Input struct {
	// Referrer is the Referer header or document.referrer, raw.
	Referrer string
	// PageHost is the host of the page visited, normalised
	// (pageurl.Result.Host); "" when unknown.
	PageHost string
	// Medium and Source are the page's utm_medium and utm_source
	// (campaign.Result).
	Medium, Source string
	// PaidClick reports an ad click id on the page
	// (campaign.Result.ClickIDs.Paid()).
	PaidClick bool
}

// Result is where the visit came from. Strings are printable ASCII except
// Name (UTF-8 from the list); all are short.
type Result struct {
	// Host is the referrer's host in lower-case ASCII (IDNA A-labels), ""
	// for none. For an Android app referrer (android-app://<package>/) it
	// is the app's package id.
	Host string
	// Domain is Host's registrable domain (public suffix plus one label),
	// or Host when it has none (an IP address, a bare suffix).
	Domain string
	// Channel is the visit's channel.
	Channel Channel
	// Name is the search engine, social network, AI assistant, webmail or
	// app the referrer belongs to, as the list names it ("Google",
	// "Facebook", "ChatGPT", "Gmail"); "" for another site.
	Name string
	// Spam reports a referrer on the referrer-spam list. The event is kept
	// and marked; its channel is Referral.
	Spam bool
}

// Store writes r into e's columns of where it came from (referrer_host,
// channel, source, referrer_spam), each within its column's limit: the
// edge's events, and an NDJSON line that says none of them (aggregator/
// ingest).
func (r Result) Store(e *event.Event) {
	e.ReferrerHost = event.Clean(r.Host, event.MaxHostLen)
	e.Channel = r.Channel.String()
	e.Source = event.Clean(r.Name, event.MaxEnumLen)
	e.ReferrerSpam = 0
	if r.Spam {
		e.ReferrerSpam = 1
	}
}

// Classify tells where a visit came from. It never fails. It allocates
// only the host, and only when it has escapes or an international name.
func Classify(in Input) Result {
	var r Result
	var ownSite bool
	r.Host = pageurl.Host(in.Referrer)
	if r.Host != "" {
		r.Spam = isSpam(r.Host)
	}
	switch {
	case r.Host == "":
	case strings.HasPrefix(r.Host, ".") || strings.Contains(r.Host, ".."):
		// An empty label, which the WHATWG URL parser keeps and DNS
		// cannot resolve: a forged name, which no list names and which
		// shares no site with the page (".google.com" is not Google's).
		r.Domain = r.Host
		ownSite = true
	default:
		suffix, icann := hostSuffix(r.Host)
		r.Domain = registrable(r.Host, suffix)
		if i, ok := lookup(r.Host, icann); ok {
			r.Name = sourceNames[i]
			r.Channel = sourceKinds[i]
		}
		// An IP address, or a public suffix itself (co.uk, github.io),
		// has no registrable domain to share with the page.
		ownSite = suffix == "" || suffix == r.Host
	}
	r.Channel = channel(in, r, ownSite)
	return r
}

// channel decides the channel: the campaign's word first (an ad or an
// email is one whatever the referrer), then the referrer.
func channel(in Input, r Result, ownSite bool) Channel {
	if r.Spam {
		return Referral
	}
	switch m := mediumClass(in.Medium); {
	case m == Paid || in.PaidClick:
		return Paid
	case m != Direct:
		return m
	}
	switch {
	case r.Host == "":
		if in.Source != "" || in.Medium != "" {
			return Referral // a tagged link from where no referrer is sent (an app, a document)
		}
		return Direct
	case in.PageHost != "" && internal(in.PageHost, r, ownSite):
		return Internal
	case r.Name != "":
		return r.Channel
	}
	return Referral
}

// mediumClass reads utm_medium the way Google Analytics' default channel
// grouping does (case-insensitively): Direct when it says nothing.
func mediumClass(m string) Channel {
	for _, c := range media {
		for _, w := range c.words {
			if equalFoldLower(m, w) {
				return c.ch
			}
		}
	}
	if len(m) > 4 && equalFoldLower(m[:4], "paid") {
		return Paid
	}
	return Direct
}

// media lists utm_medium values by channel, lower case.
var media = [...]struct {
	ch    Channel
	words []string
}{
	{Paid, []string{"cpc", "ppc", "cpm", "cpv", "cpa", "cpp", "display", "banner", "paidsearch", "retargeting", "affiliate", "paid"}},
	{Email, []string{"email", "e-mail", "e_mail", "e mail", "newsletter", "mail"}},
	{Social, []string{"social", "social-network", "social-media", "social_network", "social_media", "sm", "organic_social"}},
	{Search, []string{"organic"}},
	{Referral, []string{"referral", "referrer", "link"}},
}

// equalFoldLower reports whether s equals the lower-case ASCII w, ignoring
// ASCII case.
func equalFoldLower(s, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := 0; i < len(s); i++ {
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

// lookup finds host in the sources table: the host and its parent
// domains, then the same with the public suffix written "{}" (the lists'
// "google.{}").
func lookup(host, suffix string) (uint16, bool) {
	if v, _, ok := sources.LookupSuffix(host); ok {
		return v, true
	}
	if suffix == "" || len(suffix) >= len(host) {
		return 0, false
	}
	return sources.LookupSuffixJoin(host[:len(host)-len(suffix)], "{}")
}

// isSpam reports whether host or a parent domain is on the spam list.
func isSpam(host string) bool {
	_, _, ok := spammers.LookupSuffix(host)
	return ok
}

// hostSuffix returns host's public suffix by all the list's rules and by
// its ICANN rules alone (publicSuffix), "" for an IP address. Source
// lists' "google.{}" joins the ICANN one: google.blogspot.com is a blog on
// blogspot.com, not Google under a public suffix (tester89).
func hostSuffix(host string) (all, icann string) {
	if isIP(host) {
		return "", ""
	}
	return publicSuffix(host)
}

// isIP reports whether host is an IP address: an IPv6 literal in brackets
// or four dotted decimal numbers (what pageurl.Host leaves of one).
func isIP(host string) bool {
	if strings.HasPrefix(host, "[") {
		return true
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return host != ""
}

// registrable returns host's registrable domain (the public suffix and
// one more label, as golang.org/x/net/publicsuffix.EffectiveTLDPlusOne), or host itself for
// an IP address or a name with no label left of its suffix.
func registrable(host, suffix string) string {
	if suffix == "" || len(suffix) >= len(host) {
		return host
	}
	i := len(host) - len(suffix) - 1
	if host[i] != '.' {
		return host
	}
	return host[1+strings.LastIndexByte(host[:i], '.'):]
}

// internal reports whether referrer r is a page of pageHost's site. A
// referrer that has no registrable domain (ownSite: an IP address, or a
// public suffix itself such as co.uk or github.io) is the same site as
// its own host only (0.0.1 was internal to 10.0.0.1, and github.io to
// me.github.io: tester89).
func internal(pageHost string, r Result, ownSite bool) bool {
	if ownSite {
		return pageHost == r.Host
	}
	return sameSite(pageHost, r.Domain)
}

// sameSite reports whether pageHost has the registrable domain domain.
func sameSite(pageHost, domain string) bool {
	return pageHost == domain ||
		len(pageHost) > len(domain) && strings.HasSuffix(pageHost, domain) && pageHost[len(pageHost)-len(domain)-1] == '.'
}
