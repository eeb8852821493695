package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/referrer"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/urlescape"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// MaxLine bounds one NDJSON line. The field limits of an event add up to
// about 11 KB; JSON escaping can multiply that, hence the headroom.
const MaxLine = 64 << 10

// LineError is why a line did not become an event: Reason is the bad-row
// reason, Site the site if the line got far enough to say.
type LineError struct {
	Reason string
	Site   string
	Err    error
}

func (e *LineError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *LineError) Unwrap() error { return e.Err }

// jsonLine is one NDJSON line as log streaming sends it: the JSON form of
// event.Event (the same field names), read leniently because log formats
// are written by hand in a CDN's configuration, where every value tends to
// be a string. ts_ms may be a number or a numeric string, with a fraction
// (cut: 1750000000123.0, as encoders that write floats put it) or an
// exponent; instead of ts_ms a line may carry ts, an RFC 3339 time or unix
// seconds. props may be a
// JSON object or a string holding one. The numeric fields (bot_score,
// asn, visitor_id, ...) are JSON numbers or strings holding one (see
// decodeLine), within their column's range; anything else makes the line
// a bad row.
//
// The other fields are read into the embedded Event by its JSON tags, so a
// field added to event.Fields is read with no change here; the fields
// declared here take precedence over the Event fields of the same JSON
// name (encoding/json prefers the shallower field).
type jsonLine struct {
	event.Event
	EventID *string `json:"event_id"`
	// ClientEventID is a client's own id for the event, for a log format
	// that passes one through from the visitor's request; see ParseLine.
	ClientEventID string          `json:"client_event_id"`
	TsMS          json.RawMessage `json:"ts_ms"`
	Ts            json.RawMessage `json:"ts"`
	Props         json.RawMessage `json:"props"`
	// Type is "" for an event, wire.TypeCounters for a counters line.
	Type string `json:"type"`
	// Counts are the edge instance's counts for the event's site at
	// their ts_ms, or without one at the event's time
	// (wire.AppendEventLine).
	Counts *jsonCounts `json:"counts"`
}

type jsonCounts struct {
	Instance instanceID        `json:"instance"`
	TsMS     int64             `json:"ts_ms"`
	Hits     uint64            `json:"hits"`
	Events   uint64            `json:"events"`
	Drops    map[string]uint64 `json:"drops"`
	Notes    map[string]uint64 `json:"notes"`
}

// instanceID is an edge instance's id in a line's counts: an event.ID's
// form, read with an error that names the field (event.ID's names the
// event id).
type instanceID event.ID

func (i *instanceID) UnmarshalText(b []byte) error {
	id, err := event.ParseID(string(b))
	if err != nil {
		return fmt.Errorf("instance %q: want the edge instance's id, a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) as event ids are", clip(b))
	}
	*i = instanceID(id)
	return nil
}

// jsonCountersLine is a counters line (wire.AppendCountersLine).
type jsonCountersLine struct {
	Instance instanceID `json:"instance"`
	Pop      string     `json:"pop"`
	Sites    []struct {
		Site string `json:"site"`
		jsonCounts
	} `json:"sites"`
}

// decodeLine reads raw into a jsonLine. A numeric field whose value is
// a string holding a JSON number is read as that number (a log format
// writes every value quoted; JavaScript, whose numbers hold integers to
// 2^53 only, sends a 64-bit visitor id as a string). The line is read
// again for each such field, so a line of numbers costs nothing more.
func decodeLine(raw []byte) (jsonLine, error) {
	for {
		var l jsonLine
		err := json.Unmarshal(raw, &l)
		var te *json.UnmarshalTypeError
		if err == nil || !errors.As(err, &te) || te.Value != "string" {
			return l, err
		}
		key := fieldName(te)
		var m map[string]json.RawMessage
		var s string
		// White space around it is dropped, as around any value.
		if json.Unmarshal(raw, &m) != nil || json.Unmarshal(m[key], &s) != nil || !isJSONNumber(strings.TrimSpace(s)) {
			return l, err
		}
		m[key] = json.RawMessage(strings.TrimSpace(s))
		if raw, err = json.Marshal(m); err != nil {
			return l, err
		}
	}
}

// fieldError says what a line's field must hold, by its JSON name
// (flaghint.JSONField); a numeric field may also hold its number as a
// string (decodeLine), which a string that holds none is told.
func fieldError(te *json.UnmarshalTypeError) error {
	name := fieldName(te)
	if want := flaghint.Want(te.Type); te.Value == "string" && want != "" {
		return fmt.Errorf("%s must be %s, or a string holding one", name, want)
	}
	return errors.New(flaghint.JSONField(name, te))
}

// fieldName is the JSON name of the field te is about: the last part of
// its path through the embedded structs ("Event.bot_score").
func fieldName(te *json.UnmarshalTypeError) string {
	return te.Field[strings.LastIndexByte(te.Field, '.')+1:]
}

// isJSONNumber reports whether s is a number in JSON's grammar (RFC 8259
// section 6), which json.Number leaves unchecked.
func isJSONNumber(s string) bool {
	if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return false
	}
	var v any
	return json.Unmarshal([]byte(s), &v) == nil
}

// line is what one NDJSON line holds: an event (with its instance's
// counts, or not), or counters alone.
type line struct {
	Event    event.Event
	event    bool
	counters *wire.Counters
}

func drops(m map[string]uint64) []wire.Drop {
	if len(m) == 0 {
		return nil
	}
	ds := make([]wire.Drop, 0, len(m))
	for r, n := range m {
		ds = append(ds, wire.Drop{Reason: r, N: n})
	}
	wire.SortDrops(ds)
	return ds
}

// ParseLine turns one NDJSON line (without its newline) into an event. It
// does not judge the time against the clock; the handler does. A line
// without a name is a pageview: a log line is usually one pixel request.
//
// Every string is cleaned by event.Clean's rule (invalid UTF-8 and control
// characters become U+FFFD), as the edge cleans what it stores, but not
// cut: a value over its limit makes the line a bad row, as before. props
// take event.CleanProps' canonical form. The event then keeps what its
// consent tier keeps (event.ApplyPrivacy), as the edge's events do: an
// aggregate-tier line (or one whose consent_reason is a refusal: "dnt"
// beside no tier is the aggregate tier) is stored without visitor ids,
// user agent, props, address and the rest, and a client address is cut
// to its network.
//
// The event's id:
//   - event_id is taken as is: it is an id the edge minted (or derived
//     from a client id) and the lines carrying it come from the edge's log
//     endpoint, which the ingest token authenticates;
//   - else client_event_id, a client's own id, is treated as the edge
//     treats event_id in a POST: it must pass event.ParseClientIDSkewed
//     against the line's time (the edge's clock when the hit was seen),
//     which moves a time far from it, else the line is a bad row
//     (bad_event_id), and the event is stored as event.Scope(id, site, -1)
//     at the id's time, so the same client id arriving by a POST and by a
//     log line is one event;
//   - else the line gets a deterministic id (see LineID), so a line
//     delivered twice dedupes like an edge event retried.
//
// A counters line is not an event: ParseLine refuses it (the handler
// reads it as counters).
func ParseLine(raw []byte) (event.Event, error) {
	l, err := parseLine(raw)
	if err == nil && !l.event {
		return event.Event{}, &LineError{Reason: ReasonBadJSON, Err: errors.New("a counters line, not an event")}
	}
	return l.Event, err
}

// parseLine reads one line: an event (see ParseLine) and the counts it
// carries, or a counters line. Counts that do not parse make the line a
// bad row; whether they are valid is the handler's to check.
func parseLine(raw []byte) (line, error) {
	var e event.Event
	if len(raw) > MaxLine {
		return line{}, &LineError{Reason: ReasonLineTooLong, Err: fmt.Errorf("line of %d bytes, at most %d", len(raw), MaxLine)}
	}
	l, err := decodeLine(raw)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		// A JSON object whose field holds what its column cannot (a
		// bot_score of 500, a visitor_id of "abc"): the event is
		// invalid, and the decoder filled the rest, its site included.
		return line{}, &LineError{Reason: ReasonInvalidEvent, Site: event.Clean(strings.TrimSpace(l.Site), math.MaxInt), Err: fieldError(te)}
	case err != nil:
		return line{}, &LineError{Reason: ReasonBadJSON, Err: err}
	}
	switch l.Type {
	case "":
	case wire.TypeCounters:
		var cl jsonCountersLine
		if err := json.Unmarshal(raw, &cl); err != nil {
			return line{}, &LineError{Reason: ReasonInvalidCounters, Err: err}
		}
		c := &wire.Counters{Instance: event.ID(cl.Instance), Pop: cl.Pop}
		for _, s := range cl.Sites {
			c.Sites = append(c.Sites, wire.SiteCounts{Site: s.Site, Time: s.TsMS, Hits: s.Hits, Events: s.Events, Drops: drops(s.Drops), Notes: drops(s.Notes)})
		}
		return line{counters: c}, nil
	default:
		return line{}, &LineError{Reason: ReasonBadJSON, Site: l.Site, Err: fmt.Errorf("unknown line type %q", clip([]byte(l.Type)))}
	}
	// White space around a value is a sender's slip, as the edge reads
	// a site and a name (see edge/pixel's cleanSite and finish): "  demo "
	// is site demo, and a blank name a pageview. The edge's own values
	// (a country, a campaign) have none, and the dashboard's filters
	// drop it (query.ParseRequest): an imported "DE " would match no
	// filter. Before Clean, which makes a tab U+FFFD. Props are JSON,
	// read apart (lineProps).
	// The page and referrer are checked as sent too (urlescape.NoPage
	// reads tabs and newlines as browsers do), and again as stored
	// below: Clean makes a control character in "java\tscript:" U+FFFD,
	// which a tester's import then stored, where the edge drops it.
	badURL := urlescape.NoPage(l.URL) || urlescape.NoPage(l.Referrer)
	for i := range event.Fields {
		if f := &event.Fields[i]; f.Str != nil && f.JSON != "props" {
			p := f.Str(&l.Event)
			*p = event.Clean(strings.TrimSpace(*p), math.MaxInt)
		}
	}
	// A page as the edge stores it (urlescape.URL), so that
	// "HTTPS://Example.com/a/../it%27s" imported is the page the pixel
	// stored as "https://example.com/it's" (the fallback's lines were
	// normalised at the edge and stay as they are). Tracking parameters
	// are kept, where the edge drops them: an import's may be all it
	// says of a campaign. A form longer than the column holds is not
	// taken.
	if u := urlescape.URL(l.URL); len(u) <= event.MaxURLLen {
		l.URL = u
	}
	// A referrer alike: its user information, fragment and a servlet's
	// session id are not the visitor's to give away (a reviewer found
	// an imported ";jsessionid=" stored, which the edge drops).
	if u := urlescape.URL(l.Referrer); len(u) <= event.MaxReferrerLen {
		l.Referrer = u
	}
	// The consent reason in lower case, as the edge writes it: an
	// imported "DNT" is a refusal too (event.OptOut). A tier of another
	// spelling is refused (Validate).
	l.ConsentReason = strings.ToLower(l.ConsentReason)
	// Where the visit came from, classified as the edge classifies it
	// when the line says none of it (referrer_host, channel, source): a
	// tester's imported Google referrer counted under Sources, which
	// reads the referrer, and under no channel, and SQL by referrer_host
	// found none. The campaign is the line's, else its page's tags.
	if l.ReferrerHost == "" && l.Channel == "" && l.Source == "" && l.ReferrerSpam == 0 {
		cp := campaign.Parse(l.URL)
		medium, source := l.UTMMedium, l.UTMSource
		if medium == "" && source == "" {
			medium, source = cp.Medium, cp.Source
		}
		referrer.Classify(referrer.Input{Referrer: l.Referrer, PageHost: urlescape.ParsePage(l.URL).Host,
			Medium: medium, Source: source, PaidClick: cp.ClickIDs.Paid()}).Store(&l.Event)
	}
	// ISO 3166 codes in capitals, as the edge's geolocation gives them
	// and the dashboard's filters take them: an imported "de" is DE.
	l.Country, l.Region = strings.ToUpper(l.Country), strings.ToUpper(l.Region)
	bad := func(reason string, err error) (line, error) {
		return line{}, &LineError{Reason: reason, Site: l.Site, Err: err}
	}
	ms, err := lineTime(l.TsMS, l.Ts)
	if err != nil {
		return bad(ReasonBadTime, err)
	}
	if badURL || urlescape.NoPage(l.URL) || urlescape.NoPage(l.Referrer) {
		return bad(ReasonBadURL, errors.New("url or referrer is a "+urlescape.NoPageSchemes+" URL, which names no web page"))
	}
	props, err := lineProps(l.Props)
	if err != nil {
		return bad(ReasonInvalidEvent, err)
	}
	if l.Name == "" {
		l.Name = event.KindPageview
	}
	e = l.Event
	e.Time, e.Props = ms, props
	// What the event's tier keeps, as the edge keeps it: a line with
	// tier aggregate, or with a refusal as its consent_reason, is stored
	// cleared (event.ApplyPrivacy), and its client id cut below by the
	// tier so settled.
	e.ApplyPrivacy()
	switch {
	case l.EventID != nil && *l.EventID != "":
		if e.ID, err = event.ParseID(*l.EventID); err != nil {
			return bad(ReasonInvalidEvent, err)
		}
	case l.ClientEventID != "":
		// As the edge takes a POST's event_id, against the line's time:
		// the same id by either way is one event.
		c, _, err := event.ParseClientIDSkewed(l.ClientEventID, ms)
		if err != nil {
			return bad(ReasonBadEventID, err)
		}
		c = c.ForTier(e.Tier) // as the edge stores it
		e.ID, e.Time = event.Scope(c, e.Site, -1), c.Time()
	default:
		e.ID = LineID(ms, raw)
	}
	if err := e.Validate(); err != nil {
		return bad(ReasonInvalidEvent, err)
	}
	out := line{Event: e, event: true}
	if c := l.Counts; c != nil {
		at := e.Time
		if c.TsMS > 0 {
			at = c.TsMS
		}
		out.counters = &wire.Counters{Instance: event.ID(c.Instance), Pop: e.Pop, Sites: []wire.SiteCounts{
			{Site: e.Site, Time: at, Hits: c.Hits, Events: c.Events, Drops: drops(c.Drops), Notes: drops(c.Notes)}}}
	}
	return out, nil
}

// LineID is the id of a line that has none: a UUIDv7 of the event time
// whose random bits are a SHA-256 of the line. The same line always gets
// the same id; any other line almost surely a different one.
func LineID(ms int64, line []byte) event.ID {
	sum := sha256.Sum256(line)
	id, _ := event.NewID(ms, bytes.NewReader(sum[:10]))
	return id
}

// maxLineMS keeps times where ClickHouse's DateTime can hold them
// (event.MaxTime); the handler's window check is far tighter anyway.
const maxLineMS = event.MaxTime

func lineTime(tsMS, ts json.RawMessage) (int64, error) {
	switch {
	case len(tsMS) > 0 && string(tsMS) != "null":
		// A fraction (1750000000123.0, as encoders that write every
		// number as a float put it) is below the millisecond: cut.
		ms, _, ok := jsonDecimal(tsMS)
		if !ok || ms <= 0 || ms > maxLineMS {
			return 0, fmt.Errorf("ts_ms %s is not unix milliseconds", clip(tsMS))
		}
		return ms, nil
	case len(ts) > 0 && string(ts) != "null":
		if ms, ok := secondsMS(ts); ok {
			if ms <= 0 || ms > maxLineMS {
				// Plausible milliseconds (2001 on), not far-future seconds.
				if ms/1000 >= 1e12 && ms/1000 <= maxLineMS {
					return 0, fmt.Errorf("ts %s is not unix seconds: it reads as milliseconds, which go in ts_ms", clip(ts))
				}
				return 0, fmt.Errorf("ts %s is not unix seconds", clip(ts))
			}
			return ms, nil
		}
		var s string
		if json.Unmarshal(ts, &s) == nil {
			// RFC 3339 (whose T and Z may be lower case, section
			// 5.6), and the strftime form CDN log formats produce
			// (%Y-%m-%dT%H:%M:%S%z, an offset without a colon).
			s = strings.ToUpper(strings.TrimSpace(s))
			for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02 15:04:05Z07:00"} {
				t, err := time.Parse(layout, s)
				if err != nil {
					continue
				}
				if t.UnixMilli() <= 0 || t.UnixMilli() > maxLineMS {
					// A time, but not one an event has (a tester's
					// 1969 was called "neither RFC 3339 nor unix
					// seconds").
					return 0, fmt.Errorf("ts %s is out of range: want a time from 1970 to 2105", clip(ts))
				}
				return t.UnixMilli(), nil
			}
		}
		return 0, fmt.Errorf("ts %s is neither RFC 3339 nor unix seconds", clip(ts))
	}
	return 0, errors.New("no ts_ms or ts")
}

// secondsMS reads unix seconds (jsonDecimal: whole, with a decimal
// fraction as nginx's $msec writes it, "1796093235.123", or with an
// exponent) as milliseconds: digits past the third decimal are cut. ok is
// false for anything else (a sign).
func secondsMS(v json.RawMessage) (ms int64, ok bool) {
	whole, frac, ok := jsonDecimal(v)
	if !ok || whole >= 1e15 { // the product below stays an int64
		return 0, false
	}
	f, _ := strconv.Atoi((frac + "000")[:3])
	return whole*1000 + int64(f), true
}

// jsonDecimal reads a JSON number, or a string holding one, that is not
// negative: whole, with a decimal fraction, or with an exponent (1.7963e9,
// as some encoders write large floats, read to the precision a float64
// holds), as its whole part and the digits of its fraction. White space
// around a string's number is dropped. ok is false for anything else.
func jsonDecimal(v json.RawMessage) (whole int64, frac string, ok bool) {
	s := string(v)
	if len(s) >= 2 && s[0] == '"' {
		if json.Unmarshal(v, &s) != nil {
			return 0, "", false
		}
		s = strings.TrimSpace(s)
	}
	if strings.ContainsAny(s, "eE") {
		// Written out as the shortest decimal that reads back as the
		// same float, then cut, not rounded, by the caller.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 {
			return 0, "", false
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	w, frac, _ := strings.Cut(s, ".")
	digits := func(d string) bool { return strings.Trim(d, "0123456789") == "" }
	if w == "" || !digits(w) || !digits(frac) {
		return 0, "", false
	}
	whole, err := strconv.ParseInt(w, 10, 64)
	return whole, frac, err == nil
}

// lineProps returns props in event.CleanProps' canonical form: an object
// as is, a string when it holds an object, "" for absent, null or "".
func lineProps(v json.RawMessage) (string, error) {
	if len(v) == 0 || string(v) == "null" || string(v) == `""` {
		return "", nil
	}
	raw := []byte(v)
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		raw = []byte(s)
	}
	props, err := event.CleanProps(raw)
	if err == nil && props == "" { // "null" inside a string
		err = event.ErrPropsNotObject
	}
	return props, err
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// splitLines calls fn for each non-blank line of body, without its line
// ending (\n or \r\n), surrounding blanks and a leading byte order mark,
// until fn returns false. A file from a Windows tool starts with the mark
// (and files joined by cat carry one at each file's first line): RFC 8259
// lets a parser ignore it, as the edge's POST does, where JSON would
// refuse the line.
func splitLines(body []byte, fn func(line []byte) bool) {
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		var line []byte
		if i < 0 {
			line, body = body, nil
		} else {
			line, body = body[:i], body[i+1:]
		}
		if line = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(line), []byte("\ufeff"))); len(line) > 0 && !fn(line) {
			return
		}
	}
}

// FastlyChallengePath is where Fastly checks, before it streams logs to an
// HTTPS endpoint, that the endpoint's owner agrees to receive them.
const FastlyChallengePath = "/.well-known/fastly/logging/challenge"

// FastlyChallenge answers Fastly's logging challenge: the hex SHA-256 of
// each allowed Fastly service id, one a line, or "*" (any service) when
// none is configured. Logs still need the ingest token either way.
func FastlyChallenge(serviceIDs []string) http.Handler {
	var b strings.Builder
	for _, id := range serviceIDs {
		if id = strings.TrimSpace(id); id != "" {
			sum := sha256.Sum256([]byte(id))
			b.WriteString(hex.EncodeToString(sum[:]) + "\n")
		}
	}
	if b.Len() == 0 {
		b.WriteString("*\n")
	}
	body := b.String()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	})
}
