// Package event defines the one record edgepixel moves from the edge to
// storage: an Event, its ID, and the limits both sides enforce.
//
// Fields is the list of the event's fields: for each its Go field, JSON
// name (also its ClickHouse column), kind, size limit, ClickHouse type and
// default, and the schema version that added it. The wire codec
// (shared/wire) and the ClickHouse encoder (aggregator/clickhouse) walk
// it; the NDJSON decoder and the disk store use Event's JSON tags; tests in
// each of those packages fail when a field of Fields is missing from them.
//
// # Adding a field
//
//  1. Add the field at the end of Event, with its JSON tag (the ClickHouse
//     column name: lower case, words joined by _), and its limit constant
//     beside the others. A field is a string (KindString) or an unsigned
//     integer of 8 to 64 bits (KindUint); another kind needs support in
//     shared/wire and aggregator/clickhouse first.
//  2. Add one row at the end of Fields with Since set to the next schema
//     version (one more than the last of aggregator/clickhouse's
//     Migrations), the ClickHouse type and, for rows stored before the
//     column existed, its default.
//  3. Add one Migration with that version to aggregator/clickhouse's
//     Migrations. It adds the column at the aggregator's next start; no
//     SQL needs writing for a plain column.
//  4. Fill the field where it is known (edge/pixel for what the edge sees).
//
// A field that only travels from the edge to the aggregator (Copy) has
// Transit set and no ClickHouse type: it is on the wire and in JSON, and
// no table has its column.
//
// Rows are only ever appended: the wire format sends fields in this order
// and older decoders skip what follows the fields they know, and ClickHouse
// adds new columns at the end of the table. A field is never removed or
// reordered; stop filling it instead. `method` (schema version 2) and the
// enrichment fields of schema version 5 were added this way.
//
// To change a column in place (its type, or into an ALIAS that ClickHouse
// computes from other columns and stores nothing of), set the row's
// CHType or CHAlias and CHChanged to a new schema version, and add that
// Migration: it changes the column when no released reader or view
// depends on the old form (see VersionStorage, which made path an ALIAS).
//
// The package has no dependencies beyond the standard library's basics so
// that the edge module stays small and TinyGo-compatible: Fields holds
// plain accessor functions, not reflection.
package event

import (
	"errors"
	"fmt"
)

// Kinds of event. A pixel hit is a pageview, or an open where it is an
// email's or a feed's pixel (open=); a POSTed event carries its own name
// and is a custom event unless it says "pageview".
const (
	KindPageview = "pageview"
	KindOpen     = "open"
)

// MaxTime is the latest event time (unix milliseconds) Validate takes,
// 2106-01-01T00:00:00Z: ClickHouse's DateTime, a UInt32 of seconds, ends
// on 2106-02-07, and a later time wraps around silently into 1970 (the
// row then in the wrong day, and a load's retry not finding it).
const MaxTime = 4_291_747_200_000

// Limits on field sizes, in bytes. The edge cuts strings to them (Clean);
// the aggregator rejects events that exceed them (a forged or buggy
// sender), so a row in storage never holds more than this. MaxPropsLen
// bounds props' canonical form (CleanProps), not what the client sent.
const (
	MaxSiteLen     = 100
	MaxNameLen     = 100
	MaxURLLen      = 2048
	MaxReferrerLen = 2048
	MaxUALen       = 512
	MaxIPLen       = 45  // the longest textual IPv6 address
	MaxShortLen    = 200 // UTM fields, country, pop
	MaxPropsLen    = 4096
	MaxMethodLen   = 32 // the longest registered HTTP method, UPDATEREDIRECTREF, has 17
	// MaxEnumLen bounds the short names the edge derives (browser, OS,
	// device, channel, source, region, city, tier, reasons).
	MaxEnumLen = 100
	// MaxHostLen bounds a host name (RFC 1035's 253 octets, as text).
	MaxHostLen = 253
)

// Channels are the values of the channel column (Event.Channel), in
// edge/enrich/referrer.Channel's order: a closed set, which a filter
// checks its value against.
var Channels = [...]string{"direct", "internal", "search", "social", "email", "paid", "referral"}

// Devices are the values of the device column (Event.Device), in
// edge/enrich/useragent.Device's order, as Channels.
var Devices = [...]string{"other", "desktop", "mobile", "tablet", "bot"}

// MailOpens are the values of the mail_open column (Event.MailOpen) but
// "" (a hit that is no email or feed open): a person's open, then the
// proxies of edge/enrich/mailopen in its order, as Channels.
var MailOpens = [...]string{"person", "apple", "gmail", "yahoo", "outlook", "feed"}

// Signatures are the values of the signature column (Event.Signature) but
// "" (a site that does not check signatures), as edge/pixel names them.
var Signatures = [...]string{"verified", "unverified", "unsigned"}

// BotScoreMax is the largest bot score (Event.BotScore).
const BotScoreMax = 100

// The consent tiers (Event.Tier), as stored.
const (
	TierFull      = "full"
	TierAggregate = "aggregate"
)

// The consent reasons (Event.ConsentReason), as stored: why an event is
// in its tier. edge/privacy's Decide gives them.
const (
	ReasonDefault    = "default"      // the site's default tier applies
	ReasonConsent    = "consent"      // consent=1 raised the tier
	ReasonGPC        = "gpc"          // Sec-GPC: 1
	ReasonDNT        = "dnt"          // DNT: 1
	ReasonNoConsent  = "no_consent"   // consent=0, or any word but a given one
	ReasonCCPAOptOut = "ccpa_opt_out" // us_privacy says opted out of sale
)

// OptOut reports whether reason is a person's refusal (GPC, DNT, a
// consent refused, a CCPA opt-out): an event with one is in the
// aggregate tier whatever its tier field says (ApplyPrivacy).
func OptOut(reason string) bool {
	switch reason {
	case ReasonGPC, ReasonDNT, ReasonNoConsent, ReasonCCPAOptOut:
		return true
	}
	return false
}

// BotScoreMin is the bot score (Event.BotScore) from which an event is a
// bot's: the edge's verdict (edge/enrich/bot), the dashboard's bot share
// and what its toggle leaves out.
const BotScoreMin = 50

// Event is one hit: a pixel request or one event of a POST, enriched at the
// edge. Strings are empty when unknown. Time is the edge's clock, not the
// visitor's, so that a skewed or forged client clock cannot move events.
//
// The JSON field names (one JSON object per line is what the aggregator's
// NDJSON ingest takes) are the ClickHouse column names.
type Event struct {
	ID        ID     `json:"event_id"`
	Time      int64  `json:"ts_ms"` // unix milliseconds at the edge
	Site      string `json:"site"`  // which site the hit is for
	Name      string `json:"name"`  // "pageview" or a custom event name
	URL       string `json:"url"`   // the page
	Referrer  string `json:"referrer"`
	UserAgent string `json:"user_agent"`
	// ClientIP is the visitor's address truncated at the edge (IPv4 to /24,
	// IPv6 to /48) for sites that opt in (edge/pixel, the ip setting); ""
	// by default: no address leaves the edge. The aggregator cuts what it
	// ingests again (ApplyPrivacy), and the aggregate tier keeps none.
	ClientIP    string `json:"client_ip"`
	Country     string `json:"country"` // ISO 3166-1 alpha-2 from the POP's geolocation
	UTMSource   string `json:"utm_source"`
	UTMMedium   string `json:"utm_medium"`
	UTMCampaign string `json:"utm_campaign"`
	Pop         string `json:"pop"`    // the POP that saw the hit
	Props       string `json:"props"`  // a JSON object of custom properties, or ""
	Method      string `json:"method"` // the hit's HTTP method (GET, HEAD, POST); "" for events from before schema version 2

	// Schema version 5 (issue 11): what the edge derives from a hit. All
	// are "" or 0 for events stored before it and when unknown. See
	// edge/pixel for how each is computed.

	// The user agent (edge/enrich/useragent): browser and its major
	// version, operating system and its version, device class (desktop,
	// mobile, tablet, bot, other).
	Browser        string `json:"browser"`
	BrowserVersion string `json:"browser_version"`
	OS             string `json:"os"`
	OSVersion      string `json:"os_version"`
	Device         string `json:"device"`
	// BotScore is 0 (no sign of a program) to 100 (a program that says
	// so); BotScoreMin and more is a bot (edge/enrich/bot). BotReason is the
	// signal it rests on ("crawler", "prefetch", "datacenter", "platform"
	// for the platform's own verdict, ...), "" for none.
	BotScore  uint8  `json:"bot_score"`
	BotReason string `json:"bot_reason"`
	// Where the visit came from (edge/enrich/referrer): the referrer's
	// host, the channel (direct, internal, search, social, email, paid,
	// referral), the search engine's or social network's name, and the
	// kinds of ad click ids on the page ("gclid,fbclid"; never their
	// values).
	ReferrerHost string `json:"referrer_host"`
	Channel      string `json:"channel"`
	Source       string `json:"source"`
	ClickIDs     string `json:"click_ids"`
	UTMTerm      string `json:"utm_term"`
	UTMContent   string `json:"utm_content"`
	// Path is the page's normalised path, without query (URL holds the
	// normalised whole).
	Path string `json:"path"`
	// Region is the ISO 3166-2 subdivision code without the country
	// ("CA" for California), City the city's name, ASN the client
	// network's autonomous system number: the platform's geolocation.
	Region string `json:"region"`
	City   string `json:"city"`
	ASN    uint32 `json:"asn"`
	// VisitorID is the day's keyed hash of (site, address, user agent)
	// (edge/privacy); PrevVisitorID the previous day's, in the first
	// half hour after midnight UTC, to join a visit across midnight. 0 in
	// the aggregate tier or without a salt.
	VisitorID     uint64 `json:"visitor_id"`
	PrevVisitorID uint64 `json:"prev_visitor_id"`
	// Tier is the consent tier, TierFull or TierAggregate (edge/privacy;
	// "" from an edge before the tiers), and
	// ConsentReason why (Reason*: "default", "gpc", "dnt",
	// "no_consent", "ccpa_opt_out", "consent").
	Tier          string `json:"tier"`
	ConsentReason string `json:"consent_reason"`
	// ClientTime is the client's own clock, unix milliseconds, when it
	// sent one within the accepted skew; 0 otherwise, with
	// ClientTimeReason saying why ("out_of_range", "malformed").
	ClientTime       uint64 `json:"client_ts_ms"`
	ClientTimeReason string `json:"client_ts_reason"`
	ScreenWidth      uint16 `json:"screen_width"` // CSS pixels, from s.js
	// Signature is a signed pixel's state under the site's policy:
	// "verified", "unverified" (bad or expired, kept), "unsigned"; "" when
	// the site does not check signatures.
	Signature string `json:"signature"`
	// MailOpen is, for a pixel flagged as an email or feed open, who
	// fetched it: "person", or the proxy ("apple", "gmail", "yahoo",
	// "outlook", "feed"; edge/enrich/mailopen); "" for other hits.
	MailOpen     string `json:"mail_open"`
	ReferrerSpam uint8  `json:"referrer_spam"` // 1: the referrer is on the referrer-spam list
	// Copy names one acceptance, at the edge, of an event whose id the
	// client named (event_id, Idempotency-Key): random, never 0; 0 for
	// an event whose id the edge minted, which only one acceptance has.
	// Every delivery of that acceptance (a batch sent again, the fallback
	// log, a journal line, the spool) carries the same Copy, and a
	// client's retry, counted again at the edge, another: the aggregator
	// counts the copies of an id beyond the one stored as duplicates,
	// which are not a loss (store.Loss). It travels, and is never stored
	// (Field.Transit).
	Copy uint64 `json:"copy"`
}

// ErrInvalid wraps every validation failure so callers can tell bad input
// from I/O errors.
var ErrInvalid = errors.New("invalid event")

// Validate reports whether e can be stored. It checks what the storage
// schema relies on, including that every string is what Clean leaves
// unchanged; it does not judge plausibility (bots, spam).
func (e *Event) Validate() error {
	if e.ID.IsZero() {
		return fmt.Errorf("%w: missing id", ErrInvalid)
	}
	if e.Time <= 0 {
		return fmt.Errorf("%w: missing time", ErrInvalid)
	}
	if e.Time > MaxTime {
		return fmt.Errorf("%w: time %d is after 2106-01-01, past what storage holds", ErrInvalid, e.Time)
	}
	if e.Site == "" {
		return fmt.Errorf("%w: missing site", ErrInvalid)
	}
	if e.Name == "" {
		return fmt.Errorf("%w: missing name", ErrInvalid)
	}
	for i := range Fields {
		f := &Fields[i]
		if f.Str == nil {
			continue
		}
		if s := *f.Str(e); len(s) > f.Max {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, f.JSON, f.Max)
		} else if !IsClean(s) {
			return fmt.Errorf("%w: %s is not valid UTF-8 free of control characters (see Clean)", ErrInvalid, f.JSON)
		}
	}
	if e.BotScore > BotScoreMax {
		return fmt.Errorf("%w: bot_score %d over %d", ErrInvalid, e.BotScore, BotScoreMax)
	}
	if e.Tier != "" && e.Tier != TierFull && e.Tier != TierAggregate {
		return fmt.Errorf("%w: tier %q: want %q or %q, or no tier field", ErrInvalid, e.Tier, TierFull, TierAggregate)
	}
	return nil
}
