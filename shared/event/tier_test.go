package event

import (
	"testing"
)

// aggregateCleared and aggregateKept name every field of Fields: what
// ApplyPrivacy clears in TierAggregate, and what it keeps. A new field
// fails TestApplyPrivacy until it is put in one of them (and the README's
// consent tiers say so).
var (
	aggregateCleared = []string{"user_agent", "client_ip", "props", "utm_term", "utm_content",
		"browser_version", "os_version", "city", "asn", "visitor_id", "prev_visitor_id",
		"client_ts_ms", "client_ts_reason", "screen_width"}
	aggregateKept = []string{"event_id", "ts_ms", "site", "name", "url", "country", "utm_source", "utm_medium",
		"utm_campaign", "pop", "method", "browser", "os", "device", "bot_score", "bot_reason",
		"referrer_host", "channel", "source", "click_ids", "path", "region", "tier", "consent_reason",
		"signature", "mail_open", "referrer_spam", "copy", "referrer"}
)

// full is an event with every field set: strings to their JSON name
// (url and path with a query and a fragment), numbers to 7.
func full(tier string) Event {
	var e Event
	for i := range Fields {
		f := &Fields[i]
		switch {
		case f.Str != nil:
			*f.Str(&e) = f.JSON
		case f.SetUint != nil:
			f.SetUint(&e, 7)
		}
	}
	e.ID, e.Time = ID{1, 2, 3}, 1_763_800_000_000
	e.URL, e.Path = "https://example.com/users/alice?email=a%40b.c#top", "/users/alice?email=a%40b.c#top"
	e.Referrer = "https://mail.example.com:8443/u/alice/inbox?id=7#m"
	e.ClientIP, e.Tier = "203.0.113.77", tier
	return e
}

func TestApplyPrivacy(t *testing.T) {
	named := map[string]bool{}
	for _, n := range append(append([]string(nil), aggregateCleared...), aggregateKept...) {
		if named[n] {
			t.Errorf("%s is named twice", n)
		}
		named[n] = true
	}
	for i := range Fields {
		if !named[Fields[i].JSON] {
			t.Errorf("field %s is neither cleared nor kept by the aggregate tier: decide (aggregateCleared, aggregateKept, ApplyPrivacy)", Fields[i].JSON)
		}
	}

	before := full(TierAggregate)
	e := before
	e.ApplyPrivacy()
	cleared := map[string]bool{}
	for _, n := range aggregateCleared {
		cleared[n] = true
	}
	for i := range Fields {
		f := &Fields[i]
		var got, was any
		switch {
		case f.Str != nil:
			got, was = *f.Str(&e), *f.Str(&before)
		case f.Uint != nil:
			got, was = f.Uint(&e), f.Uint(&before)
		default:
			continue
		}
		switch {
		case f.JSON == "url" || f.JSON == "path" || f.JSON == "referrer":
		case cleared[f.JSON] && got != "" && got != uint64(0):
			t.Errorf("aggregate tier keeps %s = %v", f.JSON, got)
		case !cleared[f.JSON] && got != was:
			t.Errorf("aggregate tier changed %s from %v to %v", f.JSON, was, got)
		}
	}
	if e.URL != "https://example.com/users/alice" || e.Path != "/users/alice" {
		t.Errorf("aggregate tier: url %q path %q, want them without query and fragment", e.URL, e.Path)
	}
	if e.Referrer != "https://mail.example.com:8443/" {
		t.Errorf("aggregate tier: referrer %q, want its origin", e.Referrer)
	}
	if e.ID != before.ID || e.Time != before.Time {
		t.Error("aggregate tier changed the id or the time")
	}
	if err := e.Validate(); err != nil {
		t.Error(err)
	}
	again := e
	if again.ApplyPrivacy(); again != e {
		t.Errorf("applied twice: %+v, once %+v", again, e)
	}

	// A refusal as the reason is the aggregate tier, whatever the tier
	// field says (an import's contradiction); other reasons keep it.
	for _, tier := range []string{TierFull, "", TierAggregate} {
		for _, why := range []string{ReasonGPC, ReasonDNT, ReasonNoConsent, ReasonCCPAOptOut} {
			e := full(tier)
			e.ConsentReason = why
			e.ApplyPrivacy()
			want := before
			want.ConsentReason = why
			want.ApplyPrivacy()
			if e != want {
				t.Errorf("tier %q, reason %q: %+v, want the aggregate tier's %+v", tier, why, e, want)
			}
		}
		for _, why := range []string{ReasonDefault, ReasonConsent, "", "whatever"} {
			e := full(tier)
			e.ConsentReason = why
			if e.ApplyPrivacy(); e.Tier != tier {
				t.Errorf("tier %q, reason %q: tier %q", tier, why, e.Tier)
			}
		}
	}

	// The full tier keeps all, with the address cut to its network; an
	// open, all but the visitor ids.
	for _, tier := range []string{TierFull, ""} {
		for _, open := range []string{"", "gmail"} {
			e := full(tier)
			e.MailOpen = open
			e.ApplyPrivacy()
			want := full(tier)
			want.MailOpen = open
			want.ClientIP = "203.0.113.0"
			if open != "" {
				want.VisitorID, want.PrevVisitorID = 0, 0
			}
			if e != want {
				t.Errorf("tier %q, mail_open %q: %+v, want %+v", tier, open, e, want)
			}
		}
	}
}

func TestReferrerOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://www.google.com/search?q=x":    "https://www.google.com/",
		"https://www.google.com/":              "https://www.google.com/",
		"https://www.google.com":               "https://www.google.com/",
		"https://h.example?q=1":                "https://h.example/",
		"http://u:pw@h.example:81/a":           "http://h.example:81/",
		"http://[2001:db8::1]:8080/a":          "http://[2001:db8::1]:8080/",
		"android-app://com.google.android.gm/": "android-app://com.google.android.gm/",
		"//scheme-relative.example/p?q":        "//scheme-relative.example/",
		"/relative/path":                       "",
		"https:///nohost":                      "",
		"x y://h/":                             "",
		"":                                     "",
	} {
		if got := referrerOrigin(in); got != want {
			t.Errorf("referrerOrigin(%q) = %q, want %q", in, got, want)
		}
		if got := referrerOrigin(want); got != want {
			t.Errorf("referrerOrigin(%q) = %q: not idempotent", want, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { referrerOrigin("https://www.google.com/search?q=x") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.77":          "203.0.113.0",
		"203.0.113.0":           "203.0.113.0",
		"::ffff:203.0.113.77":   "203.0.113.0",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1::",
		"2001:db8:abcd:1234::1": "2001:db8:abcd::",
		"2001:DB8:1::":          "2001:db8:1::",
		"2001:db8:1::":          "2001:db8:1::",
		"fe80::1%eth0":          "fe80::",
		"not an address":        "",
		"203.0.113.77/24":       "",
		"":                      "",
	} {
		if got := TruncateIP(in); got != want {
			t.Errorf("TruncateIP(%q) = %q, want %q", in, got, want)
		}
	}
	// An address already cut costs no new string: the edge's hit path
	// allocates nothing.
	if a := testing.AllocsPerRun(100, func() {
		e := Event{ClientIP: "203.0.113.0", Tier: TierAggregate, URL: "https://example.com/a?q=1"}
		e.ApplyPrivacy()
		e = Event{ClientIP: "2001:db8:1::", Tier: TierFull}
		e.ApplyPrivacy()
	}); a != 0 {
		t.Errorf("%.1f allocations", a)
	}
}

// BenchmarkApplyPrivacyUnchanged is what ingest pays per event of an
// edge's batch, which the edge already cleared: ApplyPrivacy on a copy
// and the comparison that finds nothing changed (aggregator/ingest).
func BenchmarkApplyPrivacyUnchanged(b *testing.B) {
	e := valid()
	e.URL, e.UserAgent, e.Props, e.Method, e.ClientIP, e.Tier = "https://example.com/", "Mozilla/5.0", `{"a":1}`, "GET", "203.0.113.0", TierFull
	for b.Loop() {
		c := e
		if c.ApplyPrivacy(); c != e {
			b.Fatal("changed")
		}
	}
}
