package pixel

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func clientID(t *testing.T, ms int64) string {
	id, err := event.NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func TestFromJSONClientEventID(t *testing.T) {
	m := meta()
	now := m.Now.UnixMilli()
	id := clientID(t, now-5000)
	post := func(body, key string) []event.Event {
		t.Helper()
		evs, drop := FromJSON([]byte(body), key, "", m, nil)
		if drop != "" {
			t.Fatalf("%s (key %q): %s", body, key, drop)
		}
		return evs
	}
	first := post(`{"site":"a.com","event_id":"`+id+`"}`, "")[0]
	retry := post(`{"site":"a.com","event_id":"`+strings.ToUpper(id)+`","url":"https://a.com/later"}`, "")[0]
	other := post(`{"site":"b.com","event_id":"`+id+`"}`, "")[0]
	if first.ID != retry.ID || first.Time != retry.Time || first.Time != now-5000 {
		t.Errorf("a retry got another id or time: %s@%d, %s@%d", first.ID, first.Time, retry.ID, retry.Time)
	}
	if other.ID == first.ID {
		t.Error("two sites share a stored id")
	}
	if first.ID.String() == id {
		t.Error("the client's id is stored as is, unscoped")
	}

	// Idempotency-Key: per-event ids from (key, index), the same on a retry;
	// an event's own event_id wins; the key may come quoted (RFC 8941).
	key := clientID(t, now)
	body := `[{"site":"a.com"},{"site":"a.com"},{"site":"a.com","event_id":"` + id + `"}]`
	a, b := post(body, key), post(body, `"`+key+`"`)
	for i := range a {
		if a[i].ID != b[i].ID {
			t.Errorf("event %d: retried array got another id", i)
		}
	}
	if a[0].ID == a[1].ID || a[2].ID != first.ID {
		t.Errorf("ids %s %s %s; event 2 should be %s", a[0].ID, a[1].ID, a[2].ID, first.ID)
	}
	if plain := post(body, ""); plain[0].ID == a[0].ID {
		t.Error("without the key, events got the keyed ids")
	}
}

// An aggregate-tier event named by its client keeps the client's clock
// to the minute only, and its retry still lands on the same event.
func TestFromJSONAggregateTierClientTime(t *testing.T) {
	m := meta()
	now := m.Now.UnixMilli()
	at := now - 5000
	if at%60_000 == 0 {
		at -= 1234
	}
	id, key := clientID(t, at), clientID(t, at)
	for _, c := range []struct{ body, key string }{
		{`{"site":"a.com","event_id":"` + id + `","consent":0}`, ""},
		{`[{"site":"a.com","consent":0}]`, key},
	} {
		a, drop := FromJSON([]byte(c.body), c.key, "", m, nil)
		b, drop2 := FromJSON([]byte(c.body), c.key, "", m, nil)
		if drop != "" || drop2 != "" {
			t.Fatalf("%s: %s %s", c.body, drop, drop2)
		}
		if a[0].Tier != event.TierAggregate || a[0].Time != at-at%60_000 || a[0].ID.Time() != a[0].Time || a[0].ID != b[0].ID {
			t.Errorf("%s: tier %s, time %d (client %d), id %s then %s: want the aggregate tier at the client's minute, the same id on a retry",
				c.body, a[0].Tier, a[0].Time, at, a[0].ID, b[0].ID)
		}
	}
}

func TestFromJSONRejectsBadEventIDs(t *testing.T) {
	m := meta()
	now := m.Now.UnixMilli()
	v4 := []byte(clientID(t, now))
	v4[14] = '4'
	for name, id := range map[string]string{
		"not a uuid": "abc",
		"v4":         string(v4),
	} {
		if _, drop := FromJSON([]byte(`{"site":"a.com","event_id":"`+id+`"}`), "", "", m, nil); drop != wire.DropBadEventID {
			t.Errorf("event_id %s: drop %q", name, drop)
		}
		if _, drop := FromJSON([]byte(`{"site":"a.com"}`), id, "", m, nil); drop != wire.DropBadEventID {
			t.Errorf("Idempotency-Key %s: drop %q", name, drop)
		}
	}
	// Through Serve: a 400 that says why.
	h := corsHit("POST", "", `{"site":"a.com"}`, "", map[string]string{HeaderIdempotencyKey: "abc"})
	resp := &Response{}
	Serve(h, nil, &Batcher{MaxEvents: 10, MaxAge: time.Second, MaxBuffered: 10}, m.Now, resp)
	if resp.Status != 400 || resp.Drop != wire.DropBadEventID || !strings.Contains(string(resp.Body), wire.DropBadEventID) {
		t.Errorf("bad Idempotency-Key: %d %q %s", resp.Status, resp.Drop, resp.Body)
	}
}

// TestFromJSONMovesSkewedClientIDs: an id from a clock off by more than
// the bounds was refused, and s.js, which sends once it has an answer,
// lost the event (a tester's clock 15 minutes fast lost every one). It
// is stored near the edge's time, noted client_clock, and its retry is
// the same event.
func TestFromJSONMovesSkewedClientIDs(t *testing.T) {
	m := meta()
	now := m.Now.UnixMilli()
	for name, off := range map[string]int64{"15 min fast": 15 * 60_000, "25 h slow": -25 * 3_600_000, "3 h fast": 3*3_600_000 + 2000} {
		id := clientID(t, now+off)
		for _, how := range []string{"event_id", "Idempotency-Key"} {
			body, key := `{"site":"a.com","event_id":"`+id+`"}`, ""
			if how != "event_id" {
				body, key = `{"site":"a.com"}`, id
			}
			evs, notes, drop := fromJSON([]byte(body), key, "", m, nil, &refusal{})
			later := *m // s.js's retry, 16 s on
			later.Now = m.Now.Add(16 * time.Second)
			again, _, _ := fromJSON([]byte(body), key, "", &later, nil, &refusal{})
			if drop != "" || len(evs) != 1 || len(notes) != 1 || notes[0] != wire.NoteClientClock {
				t.Fatalf("%s, %s: drop %q notes %q", name, how, drop, notes)
			}
			if d := evs[0].Time - now; d < -event.ClockStep/2 || d > event.ClockStep/2 || evs[0].ID.Time() != evs[0].Time || again[0].ID != evs[0].ID {
				t.Errorf("%s, %s: stored %d ms from now, id %s then %s", name, how, d, evs[0].ID, again[0].ID)
			}
		}
	}
	// Within the bounds: the client's time, no note.
	evs, notes, _ := fromJSON([]byte(`{"site":"a.com","event_id":"`+clientID(t, now-3_600_000)+`"}`), "", "", m, nil, &refusal{})
	if len(evs) != 1 || notes != nil || evs[0].Time != now-3_600_000 {
		t.Errorf("an hour old: notes %q, time %d from now", notes, evs[0].Time-now)
	}
}

func TestPropsLimitIsOnTheDecodedSize(t *testing.T) {
	b := &Batcher{MaxEvents: 10, MaxAge: time.Second, MaxBuffered: 10}
	serve := func(props string) *Response {
		resp := &Response{}
		h, _ := hit("POST", "/e", "", `{"site":"a.com","props":`+props+`}`)
		Serve(h, nil, b, time.Now(), resp)
		return resp
	}
	// 4 KiB of "é" escaped as \u00e9 is 12 KiB sent but within the limit
	// once decoded; raw bytes over the limit are refused with their reason.
	n := (event.MaxPropsLen - len(`{"k":""}`)) / 2
	escaped := `{"k":"` + strings.Repeat(`\u00e9`, n) + `"}`
	if resp := serve(escaped); resp.Status != 204 {
		t.Fatalf("escaped props within the limit once decoded: %d %q", resp.Status, resp.Drop)
	}
	if got := b.buffered(t)[0].Props; len(got) > event.MaxPropsLen || !strings.HasPrefix(got, `{"k":"éé`) {
		t.Errorf("stored props %d bytes: %.20s", len(got), got)
	}
	for _, props := range []string{
		`{"k":"` + strings.Repeat("a", event.MaxPropsLen) + `"}`,
		`{"k":"` + strings.Repeat(`\u00e9`, n+1) + `"}`,
	} {
		if resp := serve(props); resp.Status != 413 || resp.Drop != wire.DropPropsTooLarge {
			t.Errorf("%d-byte props: %d %q, want 413 %s", len(props), resp.Status, resp.Drop, wire.DropPropsTooLarge)
		}
	}
	if resp := serve(`[1]`); resp.Status != 400 || resp.Drop != wire.DropBadJSON {
		t.Errorf("props not an object: %d %q", resp.Status, resp.Drop)
	}
}

// Every string an event stores passes event.Clean's rule, on each path.
func TestStoredStringsAreClean(t *testing.T) {
	m := meta()
	m.UserAgent, m.Referer = "UA\xff\x00/1", "https://r.example/\xc3"
	e, drop := FromQuery("site=a%FFb&url=https%3A%2F%2Fa.com%2F%00%C2%85&e=n%ED%A0%80&ref=x%E2%82", m, nil)
	if drop != "" {
		t.Fatal(drop)
	}
	// The page's URL and the referrer are stored normalised: U+FFFD percent-encoded.
	want := map[string]string{"site": "a\uFFFDb", "url": "https://a.com/%EF%BF%BD%EF%BF%BD", "name": "n\uFFFD\uFFFD\uFFFD", "referrer": "x%EF%BF%BD%EF%BF%BD", "user_agent": "UA\uFFFD\uFFFD/1"}
	for i := range event.Fields {
		f := &event.Fields[i]
		if f.Str == nil {
			continue
		}
		if w, ok := want[f.JSON]; ok && *f.Str(&e) != w {
			t.Errorf("pixel %s = %q, want %q", f.JSON, *f.Str(&e), w)
		}
	}
	evs, drop := FromJSON([]byte("{\"site\":\"a\\u0000b\",\"name\":\"\xff\",\"props\":{\"k\\u0001\":\"\xfe\"}}"), "", "", m, nil)
	if drop != "" {
		t.Fatal(drop)
	}
	if e := evs[0]; e.Site != "a\uFFFDb" || e.Name != "\uFFFD" || e.Props != "{\"k\uFFFD\":\"\uFFFD\"}" || e.URL != "https://r.example/%EF%BF%BD" {
		t.Errorf("POST event %+v", e)
	}
	if err := evs[0].Validate(); err != nil {
		t.Error(err)
	}
}

func BenchmarkServePixel(b *testing.B) {
	m := &Meta{Now: time.Now(), ClientIP: "203.0.113.9", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		Referer: "https://www.google.com/search?q=x", Pop: "lcl", Rand: rand.Reader}
	h := &Hit{Method: "GET", Path: PathPixel, RawQuery: "site=example.com&url=https%3A%2F%2Fexample.com%2Fpricing&ref=https%3A%2F%2Fgoogle.com%2F",
		Meta: func() *Meta { return m }}
	bt := &Batcher{MaxEvents: 1 << 30, MaxAge: time.Hour, MaxBuffered: 1 << 30}
	resp := &Response{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Serve(h, nil, bt, m.Now, resp)
		if i%4096 == 0 {
			bt.drop(bt.Len())
		}
	}
}
