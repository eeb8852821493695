package ingest

import (
	"encoding/json"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

// A line carries every field of event.Fields under its JSON name, and a
// line from before a field existed (or a log format that leaves it out)
// parses with the field empty.
func TestParseLineReadsEveryField(t *testing.T) {
	line := map[string]any{"ts_ms": 1750000000123, "event_id": "0197746b-5d3b-7000-8000-000000000001"}
	for i, f := range event.Fields {
		if f.Str != nil {
			line[f.JSON] = "v-" + f.JSON
		}
		if f.Uint != nil {
			line[f.JSON] = f.MaxUint() - uint64(i)
		}
	}
	// Fields with a narrower domain than their column's (Event.Validate,
	// and event.ApplyPrivacy: an address cut to its network, and the full
	// tier, as the aggregate tier clears fields; country and region,
	// ISO codes taken in capitals; an open, whose visitor ids ApplyPrivacy
	// clears, as cleared says).
	narrow := map[string]any{"bot_score": uint64(event.BotScoreMax), "tier": event.TierFull, "client_ip": "203.0.113.0", "country": "DE", "region": "BY", "mail_open": "gmail"}
	cleared := map[string]bool{"visitor_id": true, "prev_visitor_id": true}
	for k, v := range narrow {
		line[k] = v
	}
	line["props"] = `{"p":1}`
	b, err := json.Marshal(line)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseLine(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range event.Fields {
		if v, ok := narrow[f.JSON]; ok {
			if f.Uint != nil && f.Uint(&e) != v || f.Str != nil && *f.Str(&e) != v {
				t.Errorf("%s: not %v", f.JSON, v)
			}
			continue
		}
		if cleared[f.JSON] {
			if f.Uint(&e) != 0 {
				t.Errorf("%s of an open: %d, want 0", f.JSON, f.Uint(&e))
			}
			continue
		}
		if f.Uint != nil && f.Uint(&e) != f.MaxUint()-uint64(i) {
			t.Errorf("%s: %d", f.JSON, f.Uint(&e))
		}
		if f.Str == nil || f.JSON == "props" {
			continue
		}
		if got := *f.Str(&e); got != "v-"+f.JSON {
			t.Errorf("%s: %q", f.JSON, got)
		}
	}
	if e.Props != `{"p":1}` || e.Time != 1750000000123 || e.ID.String() != "0197746b-5d3b-7000-8000-000000000001" {
		t.Fatalf("%+v", e)
	}

	old, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","url":"/a"}`))
	if err != nil || old.Method != "" || old.Site != "demo" {
		t.Fatalf("a line without method: %+v %v", old, err)
	}
	if e, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo","method":"POST"}`)); err != nil || e.Method != "POST" {
		t.Fatalf("method: %+v %v", e, err)
	}
	// A number out of its column's range, or not a number, is a bad row,
	// quoted or not.
	// So is one out of its field's domain (a score over 100, a tier of
	// no meaning).
	for _, bad := range []string{`"bot_score":256`, `"asn":-1`, `"screen_width":"1024px"`, `"visitor_id":1.5`, `"bot_score":"256"`, `"visitor_id":"1.5"`,
		`"bot_score":"150"`, `"bot_score":101`, `"tier":"weird"`, `"tier":"Full"`} {
		if _, err := ParseLine([]byte(`{"ts_ms":1750000000123,"site":"demo",` + bad + `}`)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}
