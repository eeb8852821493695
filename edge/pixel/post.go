package pixel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/urlescape"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// postedEvent is one event as a browser sends it, by POST or sendBeacon.
// Short names keep beacons small; long ones are accepted too.
type postedEvent struct {
	Site     string          `json:"site"`
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	Ref      string          `json:"ref"`
	Referrer string          `json:"referrer"`
	Props    json.RawMessage `json:"props"`
	// EventID is the client's own id for the event, a UUIDv7, so that a
	// retry is stored once (see event.ParseClientIDSkewed).
	EventID string `json:"event_id"`
	// T is the client's clock (unix milliseconds), SW the screen width
	// in CSS pixels, Consent the page's consent word ("0"/"1", 0/1 or
	// false/true): numbers or strings, read leniently (jsonWord).
	// USPrivacy is the IAB US Privacy string, as the pixel's us_privacy.
	// Both are read from every occurrence of their key (signalWords), and
	// merged with the POST's URL query's (fromJSON): an opt-out wins.
	T         json.RawMessage `json:"t"`
	SW        json.RawMessage `json:"sw"`
	Consent   signalWords     `json:"consent"`
	USPrivacy signalWords     `json:"us_privacy"`
}

// signalWords are the values of a consent signal's key in one posted
// event, each as jsonWord reads it: encoding/json keeps only the last of
// a key given twice, and {"consent":0,"consent":1} must not read as
// consent (an opt-out always wins; privacy.Signals.AddConsent).
type signalWords []string

// A value that is no JSON scalar (an array, an object) is
// privacy.SignalUnreadable, an opt-out: {"consent":["0"]} or
// {"us_privacy":["1YYN"]} must not read as no signal at all. null and ""
// are none.
func (w *signalWords) UnmarshalJSON(b []byte) error {
	v := jsonWord(b)
	if s := bytes.TrimSpace(b); v == "" && len(s) > 0 && (s[0] == '[' || s[0] == '{') {
		v = privacy.SignalUnreadable
	}
	*w = append(*w, v)
	return nil
}

// jsonWord returns a JSON scalar as text: a string's contents, a number's
// digits, "1" for true and "0" for false; "" for anything else.
func jsonWord(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	switch {
	case s == "true":
		return "1"
	case s == "false":
		return "0"
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		var w string
		if json.Unmarshal(v, &w) == nil {
			return w
		}
		return ""
	case len(s) > 0 && (s[0] == '-' || s[0] >= '0' && s[0] <= '9'):
		// 1.0e3 and the like are not the integers expected here: left
		// for the reader to refuse.
		return s
	}
	return ""
}

// HeaderIdempotencyKey names a POST's events: the i-th event of a body
// sent with key K is stored as event.Scope(K, site, i), so a client that
// retries the same body with the same key has it stored once. The key is
// a UUIDv7, bare or as a structured-field string ("..."), as
// draft-ietf-httpapi-idempotency-key-header defines the header. An event's
// own event_id takes precedence.
const HeaderIdempotencyKey = "Idempotency-Key"

// FromJSON builds the events of a POST body under c (nil: the defaults):
// one JSON object or an array of them. Content types are not trusted
// (sendBeacon sends text/plain), only the bytes. A body with any invalid
// event is rejected whole, so a client never has to guess which of its
// events were counted; so is a body with an event for a site not counted
// (unknown_site), and a body over a rate limit (checked for the first
// event's site). idemKey is the Idempotency-Key header's value ("" if
// absent).
//
// An event's consent signals are its consent and us_privacy, and rawQuery's,
// as a pixel's (FromQuery): an opt-out in either wins.
//
// An event with a client id (event_id, or idemKey) gets its stored id from
// event.Scope and its time from the client id; others get a fresh id and
// the edge's time.
//
// rawQuery is the POST's URL query: for a site whose settings check
// signatures (sign=mark or sign=reject), it is what is signed (see
// postSignature). A body with an event that a sign=reject site would not
// count is rejected whole under its reason (unsigned,
// bad_pixel_signature, expired_pixel).
func FromJSON(body []byte, idemKey, rawQuery string, m *Meta, c *Config) ([]event.Event, string) {
	evs, _, drop := fromJSON(body, idemKey, rawQuery, m, c, nil)
	return evs, drop
}

// refusal is what Serve needs to know of a refused POST beyond its
// reason.
type refusal struct {
	// site is the site the drop is counted for: the one whose own rule
	// refused the body (unknown_site, a sign=reject site's unsigned,
	// bad_pixel_signature and expired_pixel, and origin_not_allowed in
	// servePost), since a mixed body's first site may have let it
	// through, or whose event's own values did (bad_url,
	// props_too_large, bad_event_id); else the first event's, also for a
	// body of JSON that did not decode (a value of the wrong type). ""
	// when the body is not JSON or has no site (Serve then counts it for
	// the URL's site).
	site string
	// detail, if not "", is what in the body the drop is about, added
	// to the answer's error: which event of several ("event 2 of 3"),
	// the JSON's mistake. A developer got one message for a dozen
	// different mistakes (a tester's).
	detail string
	// cip is the signed URL's cip when its signature verified but the
	// client's address is outside it (bad_pixel_signature): the answer
	// names the range rather than sending the sender to re-sign.
	cip string
}

// fromJSON is FromJSON that also returns each event's note reason
// (notes[i] for the i-th event, "" for none; nil when no event has one)
// and, if why is not nil, says in it what a drop is counted for and why
// (refusal) once the body parsed.
func fromJSON(body []byte, idemKey, rawQuery string, m *Meta, c *Config, why *refusal) (evs []event.Event, notes []string, drop string) {
	if c == nil {
		c = &defaultConfig
	}
	if len(body) > MaxPostBody {
		return nil, nil, wire.DropTooLarge
	}
	// RFC 8259 §8.1 lets a parser ignore a byte order mark, which some
	// clients' encoders write: it is not JSON's to refuse.
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\ufeff")))
	if why == nil {
		why = &refusal{}
	}
	// A body that is JSON but holds a value of the wrong type
	// ("name":123) is refused whole; encoding/json has filled the rest,
	// so its drop is counted for its site, as a body that parsed.
	var posted []postedEvent
	var err error
	switch {
	case len(body) > 0 && body[0] == '[':
		err = json.Unmarshal(body, &posted)
	case len(body) > 0 && body[0] == '{':
		posted = make([]postedEvent, 1)
		err = json.Unmarshal(body, &posted[0])
	default:
		return nil, nil, wire.DropBadJSON
	}
	if len(posted) > 0 {
		why.site = event.CleanSite(posted[0].Site)
	}
	if err != nil || len(posted) == 0 {
		why.detail = jsonDetail(err)
		if err == nil {
			why.detail = "an array of no events"
		}
		return nil, nil, wire.DropBadJSON
	}
	if len(posted) > MaxPostEvents {
		return nil, nil, wire.DropTooManyEvents
	}
	now := m.Now.UnixMilli()
	var key event.ID
	var keySkewed bool
	if idemKey != "" {
		var err error
		if key, keySkewed, err = event.ParseClientIDSkewed(unquoteSFString(idemKey), now); err != nil {
			return nil, nil, wire.DropBadEventID
		}
	}
	common := base(m)
	r := readRequest(m, false)
	sites := make([]SiteSettings, len(posted))
	for i := range posted {
		site := event.CleanSite(posted[i].Site)
		if site == "" {
			why.detail = eventOf(i, len(posted))
			return nil, nil, wire.DropMissingSite
		}
		posted[i].Site = site // cleaned once: what follows reads it so
		if !c.Sites.Known(site) {
			why.site, why.detail = site, eventOf(i, len(posted))
			return nil, nil, wire.DropUnknownSite
		}
		sites[i] = c.Sites.Settings(site)
	}
	if c.RateLimited != nil && postRateLimited(c.RateLimited, m.ClientIP, posted) {
		return nil, nil, wire.DropRateLimited
	}
	var sigs postSignatures
	for i := range posted {
		site := posted[i].Site
		if drop, outside := sigs.check(rawQuery, site, sites[i], c, m.Now, m.ClientIP); drop != "" {
			why.site, why.cip = site, outside
			return nil, nil, drop
		}
	}
	// The URL's query may carry consent signals too (POST
	// /e?us_privacy=1YYN): found by a new-user tester (a privacy auditor),
	// they were ignored, as was us_privacy in the body.
	var q pixelQuery
	var room []byte
	q.parse(rawQuery, &room)
	out := make([]event.Event, 0, len(posted))
	for i := range posted {
		p := &posted[i]
		// A drop for one event's own values is counted for its site,
		// not the body's first (a reviewer's finding); one for the body
		// as a whole (buffer_full, later) stays the first's.
		props, err := event.CleanProps(p.Props)
		switch {
		case errors.Is(err, event.ErrPropsTooLarge):
			why.site, why.detail = p.Site, eventOf(i, len(posted))
			return nil, nil, wire.DropPropsTooLarge
		case err != nil:
			why.site, why.detail = p.Site, err.Error() // "props: not a JSON object"
			if ev := eventOf(i, len(posted)); ev != "" {
				why.detail = ev + ": " + why.detail
			}
			return nil, nil, wire.DropBadJSON
		}
		e := common
		ref := p.Ref
		if ref == "" {
			ref = p.Referrer
		}
		page := p.URL
		if page == "" {
			page = m.Referer
		}
		if urlescape.NoPage(page) || urlescape.NoPage(ref) {
			why.site, why.detail = p.Site, eventOf(i, len(posted))
			return nil, nil, wire.DropBadURL
		}
		e.Site = p.Site
		sig := q.signals
		for _, w := range p.Consent {
			sig.AddConsent(w)
		}
		for _, w := range p.USPrivacy {
			sig.AddUSPrivacy(w)
		}
		hp := hitParams{clientTime: jsonWord(p.T), screen: jsonWord(p.SW), consent: sig.Consent,
			usPrivacy: sig.USPrivacy, signature: sigs.value(e.Site)}
		e.Props = props // before finish: the consent tier may clear it
		note := finish(&e, p.Name, page, ref, &r, m, sites[i], c, &hp)
		switch {
		case p.EventID != "":
			c, skewed, err := event.ParseClientIDSkewed(p.EventID, now)
			if err != nil {
				why.site, why.detail = p.Site, eventOf(i, len(posted))
				return nil, nil, wire.DropBadEventID
			}
			if skewed && note == "" {
				note = wire.NoteClientClock
			}
			c = c.ForTier(e.Tier)
			e.ID, e.Time = event.Scope(c, e.Site, -1), c.Time()
			if e.Copy, err = newCopy(m); err != nil {
				return nil, nil, wire.DropInternal
			}
		case idemKey != "":
			if keySkewed && note == "" {
				note = wire.NoteClientClock
			}
			k := key.ForTier(e.Tier)
			e.ID, e.Time = event.Scope(k, e.Site, i), k.Time()
			if e.Copy, err = newCopy(m); err != nil {
				return nil, nil, wire.DropInternal
			}
		default:
			if mint(&e, m, nil) != nil {
				return nil, nil, wire.DropInternal
			}
		}
		if note != "" {
			if notes == nil {
				notes = make([]string, len(posted))
			}
			notes[i] = note
		}
		out = append(out, e)
	}
	return out, notes, ""
}

// eventOf names event i (from 0) of a body of n, "" for a body of one.
func eventOf(i, n int) string {
	if n < 2 {
		return ""
	}
	return "event " + strconv.Itoa(i+1) + " of " + strconv.Itoa(n)
}

// jsonDetail says what encoding/json found wrong with a body: where its
// syntax breaks, or which field holds a value of the wrong type; "" for
// any other error (or none).
func jsonDetail(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		// encoding/json's words say what broke: a tester's JSON nested
		// too deep read as no JSON at all.
		return "not JSON at byte " + strconv.FormatInt(syntax.Offset, 10) + ": " + syntax.Error()
	case errors.As(err, &typ) && typ.Field != "":
		return "\"" + typ.Field + "\" cannot be a JSON " + typ.Value
	case errors.As(err, &typ):
		return "the body cannot be a JSON " + typ.Value
	}
	return ""
}

// newCopy draws the Copy of one acceptance of a client-named event (see
// event.Event's Copy): a retry of the event is accepted and counted
// again, and its copy tells the aggregator so.
func newCopy(m *Meta) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(m.Rand, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]) | 1, nil // never 0, which is "minted"
}

// unquoteSFString strips the quotes of a structured-field string (RFC 8941
// section 3.3.3), which is how the Idempotency-Key draft sends the key; a
// UUID needs no escapes, so none are decoded.
func unquoteSFString(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// postRateLimited counts a POST's events against the rate limits (see
// Config.RateLimited): each site with its own events, so that the client
// counts them all. A POST of many events, or of events for many sites,
// weighs as that many pixel hits: counted as one hit of its first site,
// 100-event POSTs for 100 sites each passed limits a pixel flood meets.
// It reports whether any count was over its limit. The sites are
// cleaned (event.CleanSite).
func postRateLimited(limited func(client, site string, n uint32) bool, client string, posted []postedEvent) bool {
	first := posted[0].Site
	same := true
	for i := 1; i < len(posted) && same; i++ {
		same = posted[i].Site == first
	}
	if same {
		return limited(client, first, uint32(len(posted)))
	}
	counts := make(map[string]uint32, len(posted))
	var order []string // the sites in the order posted, checked so
	for i := range posted {
		site := posted[i].Site
		if counts[site] == 0 {
			order = append(order, site)
		}
		counts[site]++
	}
	for _, site := range order {
		if limited(client, site, counts[site]) {
			return true
		}
	}
	return false
}
