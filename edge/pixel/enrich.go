package pixel

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/edge/enrich/referrer"
	"github.com/edgepixel/edgepixel/edge/enrich/useragent"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Client time: a client's clock (the pixel's t parameter, a POSTed
// event's t, unix milliseconds) is kept in client_ts_ms when it is within
// this skew of the edge's clock. Beyond it, the column is 0 and
// client_ts_reason says why. A day in the past allows a beacon queued
// offline; minutes in the future allow a fast client clock.
const (
	MaxClientLag  = 24 * time.Hour
	MaxClientLead = 10 * time.Minute
)

// Reasons in client_ts_reason.
const (
	ClientTimeOutOfRange = "out_of_range"
	ClientTimeMalformed  = "malformed"
)

// Values of the signature column.
const (
	SignatureVerified   = "verified"
	SignatureUnverified = "unverified"
	SignatureUnsigned   = "unsigned"
)

// BotReasonPlatform is bot_reason when the platform's own verdict
// (Meta.BotScore) outscored the edge's.
const BotReasonPlatform = "platform"

// requestInfo is what a request tells that all its events share: the
// user agent read once, the bot verdict, the client's address.
type requestInfo struct {
	ua        useragent.Result
	botScore  uint8
	botReason string
	ip        netip.Addr
	mailProxy string // mailopen.Classify's answer
}

// readRequest reads m for a hit; open: a pixel flagged as an email or
// feed open, whose bot verdict follows who fetched it (mailopen.Verdict).
func readRequest(m *Meta, open bool) requestInfo {
	var r requestInfo
	r.ua = useragent.Parse(m.UserAgent)
	in := bot.Input{UserAgent: m.UserAgent, SecPurpose: m.SecPurpose, Purpose: m.Purpose,
		XPurpose: m.XPurpose, XMoz: m.XMoz, SecCHUA: m.SecCHUA, ASN: m.ASN}
	v := bot.Check(in)
	decided := false
	if open {
		// Found by a new-user tester: Gmail's proxy, fetching when a
		// person opens the mail, was a bot (link_preview) and left out
		// under bots=exclude, and Apple's prefetch at delivery was kept.
		r.mailProxy = mailopen.Classify(mailopen.Input{UserAgent: m.UserAgent, ASN: m.ASN, Bot: v.Reason})
		v, decided = mailopen.Verdict(r.mailProxy, in, v)
		if r.mailProxy == mailopen.Gmail || r.mailProxy == mailopen.Yahoo {
			// The proxy's user agent, not the reader's browser.
			r.ua = useragent.Result{}
		}
	}
	r.botScore, r.botReason = v.Score, v.Reason.String()
	if m.BotScore > r.botScore && !decided {
		r.botScore, r.botReason = m.BotScore, BotReasonPlatform
		if m.BotReason != "" {
			r.botReason = m.BotReason
		}
	}
	if r.botScore >= event.BotScoreMin {
		r.ua.Device = useragent.Bot
	}
	r.ip, _ = netip.ParseAddr(m.ClientIP)
	return r
}

// hitParams are an event's own inputs besides its page and referrer.
type hitParams struct {
	clientTime string          // t: unix milliseconds, "" if absent
	screen     string          // sw: CSS pixels
	consent    string          // the consent word as read, "" if none (privacy.Signals)
	usPrivacy  string          // the us_privacy string as read, "" if none
	open       bool            // a pixel flagged as an email or feed open
	signature  string          // the signature column's value
	ids        *privacy.Hasher // nil: one of its own
	// utm are the pixel's own utm_source ... utm_content (decoded, in
	// campaign.Result's order); none for a POSTed event.
	utm [5]string
}

// enrich fills e's derived fields: e holds base's fields, its site, name
// and raw page and referrer (URL, Referrer) already cleaned; page and ref
// are the raw values. It decides the consent tier and clears what the
// tier does not keep. It returns a wire.Note* reason when e lacks what it would
// normally carry (wire.NoteNoSalt), "" otherwise.
func enrich(e *event.Event, r *requestInfo, m *Meta, st SiteSettings, c *Config, p *hitParams) (note string) {
	e.Browser = r.ua.Browser
	e.BrowserVersion = r.ua.BrowserVersion
	e.OS = r.ua.OS
	e.OSVersion = r.ua.OSVersion
	e.Device = r.ua.Device.String()
	e.BotScore, e.BotReason = r.botScore, r.botReason
	e.Region = event.Clean(m.Region, event.MaxEnumLen)
	e.City = event.Clean(m.City, event.MaxEnumLen)
	e.ASN = m.ASN
	e.Signature = p.signature
	if p.open {
		e.MailOpen = r.mailProxy
		if e.MailOpen == mailopen.Person {
			e.MailOpen = "person"
		}
	}

	base := m.Referer
	if p.open {
		base = "" // a mailbox, not the sender's site: see fromQuery
	}
	page, ref := pageurl.Resolve(e.URL, base), e.Referrer
	cp := campaign.Parse(page)
	if !cp.HasUTM() {
		// The pixel's own utm_* parameters, as an email campaign writes
		// them (p.gif?site=news&e=open&open=email&utm_campaign=x), apply
		// when the page carries no UTM tag. The page's tags win, and as a
		// set, not per field: they are how the visitor reached the page,
		// and mixing the two sets would make a campaign nobody tagged.
		// They are covered by a signed pixel's signature as every
		// parameter is (shared/pixelsign).
		cp.Source, cp.Medium, cp.Campaign = campaign.Value(p.utm[0]), campaign.Value(p.utm[1]), campaign.Value(p.utm[2])
		cp.Term, cp.Content = campaign.Value(p.utm[3]), campaign.Value(p.utm[4])
	}
	e.UTMSource, e.UTMMedium, e.UTMCampaign = cp.Source, cp.Medium, cp.Campaign
	e.UTMTerm, e.UTMContent = cp.Term, cp.Content
	if cp.ClickIDs != 0 {
		e.ClickIDs = cp.ClickIDs.String()
	}
	pu := pageurl.Normalize(page)
	e.URL, e.Path = pu.URL, pu.Path
	if st.DropQuery {
		e.URL = event.WithoutQuery(pu.URL)
	}
	rc := referrer.Classify(referrer.Input{Referrer: ref, PageHost: pu.Host, Medium: cp.Medium, Source: cp.Source, PaidClick: cp.ClickIDs.Paid()})
	if ref != "" {
		// Stored as a page is, once classified: a referring URL's user
		// information, fragment and click ids (the landing page's gclid
		// that s.js sends as the next view's referrer) are not the
		// visitor's to give away (a tester found a password and a
		// gclid's value stored).
		e.Referrer = pageurl.Normalize(ref).URL
		if st.DropQuery {
			e.Referrer = event.WithoutQuery(e.Referrer)
		}
		e.Referrer = event.Clean(e.Referrer, event.MaxReferrerLen)
	}
	rc.Store(e)

	if p.screen != "" {
		if w, err := strconv.ParseUint(p.screen, 10, 16); err == nil {
			e.ScreenWidth = uint16(w)
		}
	}
	if p.clientTime != "" {
		now := time.UnixMilli(e.Time)
		switch ms, err := strconv.ParseInt(p.clientTime, 10, 64); {
		case err != nil || ms <= 0:
			e.ClientTimeReason = ClientTimeMalformed
		case ms < now.Add(-MaxClientLag).UnixMilli() || ms > now.Add(MaxClientLead).UnixMilli():
			e.ClientTimeReason = ClientTimeOutOfRange
		default:
			e.ClientTime = uint64(ms)
		}
	}
	if st.IPPrefix {
		e.ClientIP = m.ClientIP // cut to its network by ApplyPrivacy, below
	}

	tier, why := privacy.Decide(st.Tier, privacy.Signals{GPC: m.SecGPC, DNT: m.DNT, Consent: p.consent, USPrivacy: p.usPrivacy})
	e.Tier, e.ConsentReason = tier.String(), why
	// What the tier keeps is event's rule, which the aggregator applies
	// again to whatever it ingests.
	e.ApplyPrivacy()
	if !e.HasVisitor() {
		return ""
	}
	if c.Salts != nil && r.ip.IsValid() {
		ok := false
		if salts := c.Salts(m.Now); salts != nil {
			if p.ids != nil {
				e.VisitorID, e.PrevVisitorID, ok = p.ids.IDs(salts, m.Now, e.Site, r.ip, m.UserAgent)
			} else {
				e.VisitorID, e.PrevVisitorID, ok = privacy.IDs(salts, m.Now, e.Site, r.ip, m.UserAgent)
			}
		}
		if !ok {
			return wire.NoteNoSalt
		}
	}
	return ""
}

// signature checks a pixel's signature under the site's policy: the
// signature column's value, or a drop reason under SignReject. A signed
// query bound to a client (pixelsign's cip) verifies only from client's
// address; from anywhere else it is as bad as a wrong MAC
// (bad_pixel_signature), but the MAC is right, so outside is then the
// URL's cip: the answer names it instead of asking for a new signature,
// which would not help.
func signature(rawQuery string, site string, st SiteSettings, c *Config, now time.Time, client string) (value, drop, outside string) {
	if st.Sign == SignOff {
		return "", "", ""
	}
	var keys [][]byte
	if c.PixelKeys != nil {
		keys = c.PixelKeys(site)
	}
	err := pixelsign.Verify(rawQuery, now.Unix(), keys...)
	if err == nil {
		if a, _ := netip.ParseAddr(client); !pixelsign.ClientAllowed(rawQuery, a) {
			err, outside = pixelsign.ErrBadSig, queryValue(rawQuery, pixelsign.ParamClient)
		}
	}
	switch {
	case err == nil:
		return SignatureVerified, "", ""
	case st.Sign == SignMark && err == pixelsign.ErrUnsigned:
		return SignatureUnsigned, "", ""
	case st.Sign == SignMark:
		return SignatureUnverified, "", ""
	case err == pixelsign.ErrUnsigned:
		return "", wire.DropUnsigned, ""
	case err == pixelsign.ErrExpired:
		return "", wire.DropExpiredPixel, ""
	default:
		return "", wire.DropBadSignature, outside
	}
}

// postSignatures are the signature checks of one event POST, one per
// site of its events.
//
// What is signed for a POST is its URL's query, exactly as a pixel's
// (shared/pixelsign): POST /e?site=S&exp=E&sig=X. A page's script cannot
// hold the site's key, so the body cannot be signed; the signed URL is
// what the site issues (rendered into its page, with an expiry), and its
// signature vouches that the site issued that endpoint URL before E. An
// event of the body is checked, under its site's policy, against the
// URL's signature with its site's keys, and the URL must name its site:
// a URL signed for another site does not verify (bad_pixel_signature).
// An unsigned URL is unsigned.
type postSignatures []struct{ site, value string }

// check verifies rawQuery for site under st, once per site, and returns
// the drop reason of a sign=reject site whose check failed, with the
// URL's cip when only the client was outside it (signature).
func (ps *postSignatures) check(rawQuery, site string, st SiteSettings, c *Config, now time.Time, client string) (drop, outside string) {
	if _, ok := ps.lookup(site); ok || st.Sign == SignOff {
		return "", ""
	}
	var value string
	if q := event.CleanSite(queryValue(rawQuery, pixelsign.ParamSite)); q != site && queryValue(rawQuery, pixelsign.ParamSig) != "" {
		// Signed, but for another site: as wrong as a bad MAC.
		if st.Sign != SignMark {
			return wire.DropBadSignature, ""
		}
		value = SignatureUnverified
	} else if value, drop, outside = signature(rawQuery, site, st, c, now, client); drop != "" {
		return drop, outside
	}
	*ps = append(*ps, struct{ site, value string }{site, value})
	return "", ""
}

func (ps postSignatures) lookup(site string) (string, bool) {
	for _, p := range ps {
		if p.site == site {
			return p.value, true
		}
	}
	return "", false
}

// value is the signature column's value for an event of site ("" when
// its site does not check signatures).
func (ps postSignatures) value(site string) string {
	v, _ := ps.lookup(site)
	return v
}
