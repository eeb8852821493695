package ingest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// TestLineReferrerClassified: a line that says nothing of where its visit
// came from is classified as the edge classifies it (a tester's imported
// Google referrer showed under no channel); one that says anything of it
// is kept as it says.
func TestLineReferrerClassified(t *testing.T) {
	for _, c := range []struct {
		extra                 string
		host, channel, source string
	}{
		{`"referrer":"https://www.google.com/"`, "www.google.com", "search", "Google"},
		{`"referrer":"https://shop.example/cart"`, "shop.example", "internal", ""},
		{`"url":"https://shop.example/?utm_source=news&utm_medium=email"`, "", "email", ""},
		{`"utm_medium":"cpc"`, "", "paid", ""},
		{`"url":"https://shop.example/"`, "", "direct", ""},
		{`"referrer":"https://www.google.com/","channel":"paid"`, "", "paid", ""},
		{`"referrer":"https://www.google.com/","referrer_host":"google.com"`, "google.com", "", ""},
		{`"referrer":"https://spam.example/","referrer_spam":1`, "", "", ""},
	} {
		e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"shop","url":"https://shop.example/a",` + c.extra + `}`))
		if err != nil || e.ReferrerHost != c.host || e.Channel != c.channel || e.Source != c.source {
			t.Errorf("%s: referrer_host %q channel %q source %q (%v), want %q %q %q", c.extra, e.ReferrerHost, e.Channel, e.Source, err, c.host, c.channel, c.source)
		}
	}
}

// TestLineReferrerNormalised: an imported referrer is stored as the edge
// stores one, without user information, fragment or a servlet's session
// id (a reviewer's import kept ";jsessionid=").
func TestLineReferrerNormalised(t *testing.T) {
	e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"shop","referrer":"https://u:p@Shop.example/b;jsessionid=ABC?x=1#frag"}`))
	if err != nil || e.Referrer != "https://shop.example/b?x=1" {
		t.Errorf("referrer %q (%v)", e.Referrer, err)
	}
}

func TestParseLine(t *testing.T) {
	// An event's own JSON form is a valid line and comes back identical
	// (an edge's event always has a channel).
	e := newEvent(t, "demo")
	e.Props = `{"plan":"pro"}`
	e.UTMSource, e.Country, e.Channel = "news", "DE", "referral"
	js, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseLine(js)
	if err != nil || got != e {
		t.Fatalf("own JSON: %+v %v\n%s", got, err, js)
	}

	// What a hand-written CDN log format produces: numbers as strings,
	// no id, no name, props as an object.
	line := []byte(`{"ts_ms":"1750000000123","site":"demo","url":"https://example.com/a","props":{"a": 1},"extra":"ignored"}`)
	got, err = ParseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	if got.Time != 1750000000123 || got.Name != event.KindPageview || got.Props != `{"a":1}` || got.ID.IsZero() {
		t.Fatalf("%+v", got)
	}
	// The id is deterministic: the same line, the same id, with the event
	// time in its UUIDv7 timestamp bits; another line, another id.
	again, _ := ParseLine(line)
	other, _ := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","url":"https://example.com/b"}`))
	if again.ID != got.ID || other.ID == got.ID || got.ID != LineID(1750000000123, line) {
		t.Fatalf("ids %s %s %s", got.ID, again.ID, other.ID)
	}
	if ms := int64(got.ID[0])<<40 | int64(got.ID[1])<<32 | int64(got.ID[2])<<24 | int64(got.ID[3])<<16 | int64(got.ID[4])<<8 | int64(got.ID[5]); ms != got.Time || got.ID[6]>>4 != 7 {
		t.Fatalf("id %s is not a UUIDv7 of the event time", got.ID)
	}

	// Numbers as strings, as a log format or JavaScript (a 64-bit
	// visitor id) writes them.
	got, err = ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","visitor_id":"18446744073709551557","screen_width":"1440","bot_score":"5"}`))
	if err != nil || got.VisitorID != 18446744073709551557 || got.ScreenWidth != 1440 || got.BotScore != 5 {
		t.Fatalf("numbers as strings: %+v %v", got, err)
	}

	for _, c := range []struct {
		line, ts string
	}{
		{`{"ts":"2025-06-15T15:06:40.123Z","site":"s"}`, "2025-06-15T15:06:40.123Z"},
		{`{"ts":"2025-06-15T17:06:40+0200","site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":1750000000,"site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":"1750000000","site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":1750000000.123,"site":"s"}`, "2025-06-15T15:06:40.123Z"}, // nginx's $msec
		{`{"ts":"1750000000.5","site":"s"}`, "2025-06-15T15:06:40.5Z"},
		{`{"ts":1750000000.123999,"site":"s"}`, "2025-06-15T15:06:40.123Z"}, // cut, not rounded
		// A JSON number with an exponent is a number (a tester's
		// 1.7963e9 was a bad time).
		{`{"ts":1.75e9,"site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":1.750000000123E+9,"site":"s"}`, "2025-06-15T15:06:40.123Z"},
		{`{"ts":1.7500000001239e9,"site":"s"}`, "2025-06-15T15:06:40.123Z"}, // cut, as decimals are
		// Found by a second tester: quoted values with white space, a
		// string with an exponent, RFC 3339's lower-case t and z.
		{`{"ts":" 1750000000 ","site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":" 2025-06-15T15:06:40Z ","site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts_ms":" 1750000000123 ","site":"s"}`, "2025-06-15T15:06:40.123Z"},
		{`{"ts":"1.75e9","site":"s"}`, "2025-06-15T15:06:40Z"},
		{`{"ts":"2025-06-15t15:06:40z","site":"s"}`, "2025-06-15T15:06:40Z"},
		// Milliseconds as a float writes them (Python's json, a
		// float column): the fraction is below the millisecond.
		{`{"ts_ms":1750000000123.0,"site":"s"}`, "2025-06-15T15:06:40.123Z"},
		{`{"ts_ms":"1750000000123.9","site":"s"}`, "2025-06-15T15:06:40.123Z"},
		{`{"ts_ms":1.750000000123e12,"site":"s"}`, "2025-06-15T15:06:40.123Z"},
	} {
		got, err := ParseLine([]byte(c.line))
		if err != nil {
			t.Errorf("%s: %v", c.line, err)
			continue
		}
		if want, _ := time.Parse(time.RFC3339Nano, c.ts); got.Time != want.UnixMilli() {
			t.Errorf("%s: time %d, want %d", c.line, got.Time, want.UnixMilli())
		}
	}

	// Milliseconds sent as ts are said to be milliseconds, for ts_ms.
	if _, err := ParseLine([]byte(`{"ts":1750000000123,"site":"s"}`)); err == nil || !strings.Contains(err.Error(), "ts_ms") {
		t.Errorf("milliseconds in ts: %v, want a hint to send ts_ms", err)
	}
	// Far-future seconds are not said to be milliseconds (5e9 ms is 1970).
	if _, err := ParseLine([]byte(`{"ts":5000000000,"site":"s"}`)); err == nil || strings.Contains(err.Error(), "ts_ms") {
		t.Errorf("far-future seconds in ts: %v, want no hint to send ts_ms", err)
	}
	if e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"s","visitor_id":" 42 "}`)); err != nil || e.VisitorID != 42 {
		t.Errorf("a quoted number with white space: %+v, %v", e, err)
	}
	// White space around any value is dropped, as around a site: an
	// imported "DE " matched no filter (found by a review).
	if e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"s","utm_campaign":" spring ","country":"DE ","url":" https://s.example/a\t"}`)); err != nil || e.UTMCampaign != "spring" || e.Country != "DE" || e.URL != "https://s.example/a" {
		t.Errorf("values with white space: %+v, %v", e, err)
	}
	// A page's escapes are stored as the edge stores them, so an
	// imported "/it%27s" is the pixel's "/it's" (found by a new-user
	// tester); what the edge stored comes back as it was.
	for in, want := range map[string]string{
		"https://e.example/it%27s#top":         "https://e.example/it's",
		"https://e.example/=cmd|calc?q=it's":   "https://e.example/=cmd%7Ccalc?q=it%27s",
		"https://e.example/caf%C3%A9?utm_id=1": "https://e.example/caf%C3%A9?utm_id=1",
		"https://e.example/café":               "https://e.example/caf%C3%A9",
		// The edge's other spellings of a page (a re-tester's list):
		// dot segments, a backslash, the host's case and port.
		"HTTPS://E.Example:443/a/./b/../c\\d?x=1": "https://e.example/a/c/d?x=1",
		"https://e.example":                       "https://e.example/",
	} {
		line, _ := json.Marshal(map[string]any{"ts_ms": 1750000000123, "site": "s", "url": in})
		if e, err := ParseLine(line); err != nil || e.URL != want {
			t.Errorf("url %q: stored %q, %v; want %q", in, e.URL, err, want)
		}
	}
	// An escaped form over the column's bound is not taken.
	long := "https://e.example/" + strings.Repeat("|", event.MaxURLLen-len("https://e.example/"))
	if e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"s","url":"` + long + `"}`)); err != nil || e.URL != long {
		t.Errorf("a url that escapes past the bound: %d bytes, %v", len(e.URL), err)
	}
	// A byte order mark before a line (a Windows tool's file, or files
	// joined by cat) is ignored, as the edge's POST ignores it.
	var lines []string
	splitLines([]byte("\ufeff{\"a\":1}\n\ufeff {\"b\":2}\r\n\ufeff\n"), func(l []byte) bool { lines = append(lines, string(l)); return true })
	if fmt.Sprint(lines) != `[{"a":1} {"b":2}]` {
		t.Errorf("lines with a byte order mark: %q", lines)
	}

	for _, c := range []struct {
		line, reason, site string
	}{
		{`{"ts_ms":1750000000123,"site":"demo"`, ReasonBadJSON, ""},
		{`[1,2]`, ReasonBadJSON, ""},
		{`{"ts_ms":1750000000123,"site":5}`, ReasonInvalidEvent, ""},
		// A field its column cannot hold: the event is invalid, and its
		// site known (found by a new-user tester: bad_json, site '').
		{`{"ts_ms":1750000000123,"site":"demo","visitor_id":"abc"}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","visitor_id":"-1"}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":" demo ","screen_width":"1e99"}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","bot_score":500}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","url":5}`, ReasonInvalidEvent, "demo"},
		{`{"site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","url":"javascript:alert(1)"}`, ReasonBadURL, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","url":"mailto:alice@example.com"}`, ReasonBadURL, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","referrer":"\u00a0Data:text/html,x"}`, ReasonBadURL, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","url":"java\tscript:alert(1)"}`, ReasonBadURL, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","referrer":"\u0001 javascript:x"}`, ReasonBadURL, "demo"},
		{`{"ts_ms":"yesterday","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":-5,"site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":1750000000123.,"site":"demo"}`, ReasonBadJSON, ""},
		{`{"ts_ms":"1750000000123.x","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":"0.5","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":1e99,"site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":4300000000000,"site":"demo"}`, ReasonBadTime, "demo"}, // past ClickHouse's DateTime: it would wrap into 1970
		{`{"ts":"15/06/2025","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts":-1.75e9,"site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts":"1750000000.1x","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts":".5","site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts":-1750000000.5,"site":"demo"}`, ReasonBadTime, "demo"},
		{`{"ts_ms":1750000000123}`, ReasonInvalidEvent, ""},
		{`{"ts_ms":1750000000123,"site":"demo","event_id":"not-an-id"}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","props":[1]}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"demo","props":"nope"}`, ReasonInvalidEvent, "demo"},
		{`{"ts_ms":1750000000123,"site":"` + strings.Repeat("x", 101) + `"}`, ReasonInvalidEvent, strings.Repeat("x", 101)},
		{`{"site":"` + strings.Repeat("x", MaxLine) + `"}`, ReasonLineTooLong, ""},
	} {
		_, err := ParseLine([]byte(c.line))
		var le *LineError
		if !errors.As(err, &le) || le.Reason != c.reason || le.Site != c.site {
			t.Errorf("%.60s: %v, want %s (site %q)", c.line, err, c.reason, c.site)
		}
	}
}

// An escaped first letter makes no scheme: "%6Aavascript:" is a relative
// page, stored as the edge stores it ("./javascript:...", a dot segment
// first so that it stays a path), not refused where the edge takes it.
func TestParseLineEscapedScheme(t *testing.T) {
	e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","url":"%6Aavascript:alert(1)"}`))
	if err != nil || e.URL != "./javascript:alert(1)" {
		t.Errorf("url %q (%v), want ./javascript:alert(1)", e.URL, err)
	}
}

// A field's refusal names the field by its JSON name and what it must
// hold, not the Go struct behind it.
func TestParseLineFieldError(t *testing.T) {
	for line, want := range map[string]string{
		`{"ts_ms":1,"site":"d","bot_score":500}`:    "invalid_event: bot_score must be a whole number from 0 to 255, not a JSON number 500",
		`{"ts_ms":1,"site":"d","visitor_id":"abc"}`: "invalid_event: visitor_id must be a whole number from 0 to 18446744073709551615, or a string holding one",
		`{"ts_ms":1,"site":"d","screen_width":-1}`:  "invalid_event: screen_width must be a whole number from 0 to 65535, not a JSON number -1",
		`{"ts_ms":1,"site":"d","url":{"a":1}}`:      "invalid_event: url must be a string, not a JSON object",
	} {
		if _, err := ParseLine([]byte(line)); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", line, err, want)
		}
	}
}

// A line's strings pass the edge's one rule (event.Clean), and its props
// take the same canonical form as a POST's.
func TestParseLineCleans(t *testing.T) {
	e, err := ParseLine([]byte("{\"ts_ms\":1750000000123,\"site\":\"d\xffe\",\"url\":\"/a\\u0000b\",\"user_agent\":\"U\\u0085A\",\"props\":{\"caf\\u00e9\":\"\\ud800\"}}"))
	if err != nil {
		t.Fatal(err)
	}
	// The url's U+FFFD is then escaped, as the edge stores a page.
	if e.Site != "d\uFFFDe" || e.URL != "/a%EF%BF%BDb" || e.UserAgent != "U\uFFFDA" || e.Props != "{\"café\":\"\uFFFD\"}" {
		t.Errorf("%+v", e)
	}
	// The limit holds after cleaning: a site of 100 bytes with a control
	// character is 102 once cleaned, a bad row rather than cut.
	_, err = ParseLine([]byte(`{"ts_ms":1750000000123,"site":"\u0001` + strings.Repeat("x", 99) + `"}`))
	var le *LineError
	if !errors.As(err, &le) || le.Reason != ReasonInvalidEvent {
		t.Errorf("site over its limit once cleaned: %v", err)
	}
	// White space around the site and the name goes, as at the edge: a
	// blank name is a pageview, a blank site no site.
	if e, err = ParseLine([]byte(`{"ts_ms":1750000000123,"site":"  demo\t","name":"   "}`)); err != nil || e.Site != "demo" || e.Name != event.KindPageview {
		t.Errorf("site and name with white space around: %q %q, %v", e.Site, e.Name, err)
	}
	if _, err = ParseLine([]byte(`{"ts_ms":1750000000123,"site":"   "}`)); !errors.As(err, &le) || le.Reason != ReasonInvalidEvent {
		t.Errorf("blank site: %v", err)
	}
	// ISO codes in capitals, as the edge's geolocation gives them and
	// the filters take them.
	if e, err = ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","country":"de","region":"by"}`)); err != nil || e.Country != "DE" || e.Region != "BY" {
		t.Errorf("lower-case country and region: %q %q, %v", e.Country, e.Region, err)
	}
	// A time before 1970 is a time, out of range: said so (a tester's
	// 1969 was "neither RFC 3339 nor unix seconds").
	if _, err = ParseLine([]byte(`{"ts":"1969-01-01T00:00:00Z","site":"demo"}`)); !errors.As(err, &le) || le.Reason != ReasonBadTime || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("1969: %v", err)
	}
}

// client_event_id is treated as the edge treats a POST's event_id.
func TestParseLineClientEventID(t *testing.T) {
	const ms = 1750000000123
	c, err := event.NewID(ms-60_000, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	line := func(site, extra string) []byte {
		return []byte(fmt.Sprintf(`{"ts_ms":%d,"site":%q,"client_event_id":%q%s}`, ms, site, c, extra))
	}
	a, err := ParseLine(line("a.com", ""))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != event.Scope(c, "a.com", -1) || a.Time != c.Time() {
		t.Errorf("id %s time %d, want the scoped id at the client's time", a.ID, a.Time)
	}
	again, _ := ParseLine(line("a.com", `,"url":"/retried"`))
	b, _ := ParseLine(line("b.com", ""))
	if again.ID != a.ID || b.ID == a.ID {
		t.Errorf("retry %s, other site %s, first %s", again.ID, b.ID, a.ID)
	}
	// In the aggregate tier, the client's time to the minute, as the edge
	// stores a POSTed event of that tier: the same client id by either
	// way is one event.
	agg, err := ParseLine(line("a.com", `,"tier":"aggregate"`))
	cut := c.ForTier(event.TierAggregate)
	if err != nil || agg.ID != event.Scope(cut, "a.com", -1) || agg.Time != cut.Time() || agg.Time%60_000 != 0 {
		t.Errorf("aggregate tier: id %s time %d (%v), want the scoped id at the client's minute", agg.ID, agg.Time, err)
	}
	// A refusal beside no tier (or "full"), in any case, is the aggregate
	// tier's, its id cut alike, its free-form fields cleared.
	for _, tier := range []string{"", `,"tier":"full"`} {
		e, err := ParseLine(line("a.com", tier+`,"consent_reason":" DNT","user_agent":"Mozilla/5.0 raw","props":{"plan":"pro"}`))
		if err != nil || e.Tier != event.TierAggregate || e.ID != agg.ID || e.Time != agg.Time || e.UserAgent != "" || e.Props != "" {
			t.Errorf("dnt beside tier %q: tier %q id %s time %d ua %q props %q (%v), want the aggregate tier's %s", tier, e.Tier, e.ID, e.Time, e.UserAgent, e.Props, err, agg.ID)
		}
	}
	// An edge-minted event_id is the stored id, whatever else the line says.
	edge := "0197746b-5d3b-7000-8000-000000000001"
	if e, err := ParseLine(line("a.com", `,"event_id":"`+edge+`"`)); err != nil || e.ID.String() != edge {
		t.Errorf("event_id beside client_event_id: %v %v", e.ID, err)
	}
	v4 := []byte(c.String())
	v4[14] = '4'
	// A client clock a quarter hour fast is moved as the edge moves it,
	// to the same stored id a POST gets; one days off is refused.
	fast, _ := event.NewID(ms+15*60_000, rand.Reader)
	moved, _, _ := event.ParseClientIDSkewed(fast.String(), ms)
	if e, err := ParseLine([]byte(fmt.Sprintf(`{"ts_ms":%d,"site":"a.com","client_event_id":%q}`, ms, fast))); err != nil || e.ID != event.Scope(moved, "a.com", -1) || e.Time != ms {
		t.Errorf("a clock 15 min fast: %s at %d (%v), want %s at the line's time", e.ID, e.Time-ms, err, event.Scope(moved, "a.com", -1))
	}
	old, _ := event.NewID(ms-event.MaxClientIDSkew-1, rand.Reader)
	for _, id := range []string{"nope", string(v4), old.String()} {
		_, err := ParseLine([]byte(fmt.Sprintf(`{"ts_ms":%d,"site":"a.com","client_event_id":%q}`, ms, id)))
		var le *LineError
		if !errors.As(err, &le) || le.Reason != ReasonBadEventID || le.Site != "a.com" {
			t.Errorf("client_event_id %s: %v", id, err)
		}
	}
}

func ndjsonRequest(body []byte, hdr map[string]string) *http.Request {
	r := httptest.NewRequest("POST", "/ingest/ndjson", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-ndjson")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

func TestNDJSONHandler(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	const token = "log-token-0123456789"
	h := NewNDJSON(Config{Secret: secret, Spool: sp, Metrics: m, LogToken: token})
	now := time.Now().UnixMilli()
	body := []byte(fmt.Sprintf("{\"ts_ms\":%d,\"site\":\"demo\",\"url\":\"/a\"}\r\n\n  \n{broken\n{\"ts_ms\":%d,\"site\":\"demo\"}\n{\"ts_ms\":%d,\"site\":\"demo\",\"name\":\"signup\"}",
		now, now-40*24*3600*1000, now))
	bearer := map[string]string{"Authorization": "Bearer " + token}
	serve := func(r *http.Request) (int, map[string]any) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, answer(t, w)
	}
	if code, res := serve(ndjsonRequest(body, bearer)); code != 200 || res["accepted"] != 2.0 || res["bad"] != 2.0 {
		t.Fatalf("%d %v", code, res)
	}
	evs, bad, err := decodeRecord(sp.recs[0])
	if err != nil || len(evs) != 2 || len(bad) != 2 {
		t.Fatalf("%d events %d bad: %v", len(evs), len(bad), err)
	}
	if evs[1].Name != "signup" || evs[0].URL != "/a" || bad[0].Reason != ReasonBadJSON || bad[0].Raw != "{broken" ||
		bad[1].Reason != ReasonBadTime || bad[1].Site != "demo" || bad[1].Source != record.SourceNDJSON {
		t.Fatalf("%+v\n%+v", evs, bad)
	}
	// A re-delivered body gives the same ids, of events and of bad rows
	// (the loader dedupes both).
	serve(ndjsonRequest(body, bearer))
	evs2, bad2, _ := decodeRecord(sp.recs[1])
	if len(evs2) != 2 || evs2[0].ID != evs[0].ID || evs2[1].ID != evs[1].ID {
		t.Fatal("re-delivered lines got new ids")
	}
	if len(bad2) != 2 || bad2[0].ID != bad[0].ID || bad2[1].ID != bad[1].ID {
		t.Fatal("re-delivered bad lines got new ids")
	}

	// Authentication: bearer token or HMAC headers, nothing else.
	ts := time.Now().Unix()
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"hmac", signed(secret, ts, body), 200, ""},
		{"lower-case bearer", map[string]string{"Authorization": "bearer " + token}, 200, ""},
		{"wrong token", map[string]string{"Authorization": "Bearer " + token + "x"}, 401, ReasonBadToken},
		{"basic auth", map[string]string{"Authorization": "Basic " + token}, 401, ReasonBadToken},
		{"nothing", nil, 401, ReasonBadSignature},
		{"wrong hmac", signed([]byte("other"), ts, body), 401, ReasonBadSignature},
	} {
		code, res := serve(ndjsonRequest(body, c.hdr))
		if code != c.status || (c.reason != "" && res["reason"] != c.reason) {
			t.Errorf("%s: %d %v", c.name, code, res)
		}
	}
	// Without a configured token, a bearer header is refused.
	noToken := NewNDJSON(Config{Secret: secret, Spool: sp})
	w := httptest.NewRecorder()
	noToken.ServeHTTP(w, ndjsonRequest(body, map[string]string{"Authorization": "Bearer "}))
	if w.Code != 401 || !strings.Contains(w.Body.String(), ReasonBadToken) {
		t.Errorf("no token configured: %d %s", w.Code, w.Body)
	}

	// Compressed, and more lines than one wire batch holds: records of at
	// most a batch each, holding every line.
	var big bytes.Buffer
	n := wire.MaxEvents + 5
	for i := range n {
		fmt.Fprintf(&big, "{\"ts_ms\":%d,\"site\":\"s%d\"}\n", now, i%3)
	}
	before := len(sp.recs)
	hdr := map[string]string{"Authorization": "Bearer " + token, "Content-Encoding": "zstd"}
	big2 := NewNDJSON(Config{Secret: secret, Spool: sp, LogToken: token, MaxBody: 1 << 20})
	w = httptest.NewRecorder()
	big2.ServeHTTP(w, ndjsonRequest(zstded(t, big.Bytes()), hdr))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != float64(n) {
		t.Fatalf("%d %v", w.Code, res)
	}
	total := 0
	for _, rec := range sp.recs[before:] {
		c, err := record.Count(rec)
		if err != nil || c > wire.MaxEvents {
			t.Fatalf("a record of %d events: %v", c, err)
		}
		total += c
	}
	if total != n || len(sp.recs)-before != 2 {
		t.Fatalf("%d events in %d records, want %d in 2", total, len(sp.recs)-before, n)
	}
}

func signed(key []byte, ts int64, body []byte) map[string]string {
	return map[string]string{wire.HeaderTimestamp: strconv.FormatInt(ts, 10), wire.HeaderSignature: wire.Sign(key, ts, body)}
}

func TestTokenMatches(t *testing.T) {
	for _, c := range []struct {
		header, token string
		want          bool
	}{
		{"Bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer abcd", "abc", false},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"abc", "abc", false},
		{"", "abc", false},
	} {
		if got := TokenMatches(c.header, c.token); got != c.want {
			t.Errorf("%q vs %q: %v", c.header, c.token, got)
		}
	}
}

// FuzzParseLine: any line either parses to an event that validates (so
// every string is valid UTF-8 free of control characters, event.Clean's
// rule, and within its limit) and whose own JSON parses back to the same
// event, or fails with a LineError carrying one of the documented reasons.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte("{\"ts_ms\":1750000000123,\"site\":\"d\xffe\",\"url\":\"\\u0000\\ud800\",\"user_agent\":\"\x7f\",\"props\":{\"k\\u0001\":\"\xc3\"}}"))
	f.Add([]byte(`{"ts_ms":1750000000123,"site":"demo","client_event_id":"0197746b-5d3b-7000-8000-000000000000"}`))
	f.Add([]byte(`{"ts_ms":1750000000123,"site":"demo","url":"/a","props":{"a":1}}`))
	f.Add([]byte(`{"ts":"2025-06-15T17:06:40+0200","site":"s","event_id":"0197746b-5d3b-7000-8000-000000000000"}`))
	f.Add([]byte(`{"ts_ms":"1750000000123","site":"demo","props":"{\"x\":[1,2]}"}`))
	f.Add([]byte(`{"ts_ms":1750000000123,"site":"ndj","url":"/u/a?x#y","client_ip":"203.0.113.77","tier":"aggregate","visitor_id":4242,"user_agent":"Mozilla raw","props":{"email":"x@y.z"}}`))
	f.Add([]byte(`{"ts_ms":1750000000123,"site":"ndj","client_ip":"2001:DB8::1","tier":"full"}`))
	f.Add([]byte(`{"site":"demo"`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLine(line)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("not a LineError: %v", err)
			}
			switch le.Reason {
			case ReasonBadJSON, ReasonBadTime, ReasonInvalidEvent, ReasonLineTooLong, ReasonBadEventID, ReasonBadURL:
			default:
				t.Fatalf("reason %q", le.Reason)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("parsed an invalid event: %v", err)
		}
		js, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseLine(js)
		if err != nil {
			t.Fatalf("own JSON %s: %v", js, err)
		}
		// Clean strings and canonical props survive JSON unchanged.
		if back != e {
			t.Fatalf("round trip:\n%+v\n%+v", e, back)
		}
	})
}

func TestFastlyChallenge(t *testing.T) {
	for _, c := range []struct {
		ids  []string
		want string
	}{
		{nil, "*\n"},
		{[]string{"", " "}, "*\n"},
		{[]string{"SU1Z0isxPaozGVKXdv0eY", "second"}, "66b01d440c79400570c755aad9d589af5368719067c13fee58710a7198db2de8\n16367aacb67a4a017c8da8ab95682ccb390863780f7114dda0a0e0c55644c7c4\n"}, // sha256sum of each id
	} {
		w := httptest.NewRecorder()
		FastlyChallenge(c.ids).ServeHTTP(w, httptest.NewRequest("GET", FastlyChallengePath, nil))
		if w.Body.String() != c.want {
			t.Errorf("%v: %q, want %q", c.ids, w.Body.String(), c.want)
		}
	}
}

// A counters line whose instance is not an id is a bad row that says
// which field and what it wants (it named the event id, which the line
// does not have).
func TestCountersLineInstance(t *testing.T) {
	_, err := parseLine([]byte(`{"type":"counters","instance":"i1","pop":"p","sites":[]}`))
	var le *LineError
	if !errors.As(err, &le) || le.Reason != ReasonInvalidCounters || !strings.Contains(err.Error(), `instance "i1"`) || strings.Contains(err.Error(), "event id:") {
		t.Fatalf("%v", err)
	}
	l, err := parseLine([]byte(`{"type":"counters","instance":"0197746b-5d3b-7000-8000-000000000001","pop":"p","sites":[]}`))
	if err != nil || l.counters == nil || l.counters.Instance.String() != "0197746b-5d3b-7000-8000-000000000001" {
		t.Fatalf("%+v %v", l, err)
	}
}
