package privacy

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		def    Tier
		s      Signals
		tier   Tier
		reason string
	}{
		{TierFull, Signals{}, TierFull, ReasonDefault},
		{TierAggregate, Signals{}, TierAggregate, ReasonDefault},
		{TierFull, Signals{GPC: "1"}, TierAggregate, ReasonGPC},
		{TierFull, Signals{DNT: "1"}, TierAggregate, ReasonDNT},
		{TierFull, Signals{DNT: "0"}, TierFull, ReasonDefault},
		{TierFull, Signals{Consent: "0"}, TierAggregate, ReasonNoConsent},
		{TierFull, Signals{USPrivacy: "1YYN"}, TierAggregate, ReasonCCPAOptOut},
		{TierFull, Signals{USPrivacy: "1YNN"}, TierFull, ReasonDefault},
		{TierFull, Signals{USPrivacy: "1---"}, TierFull, ReasonDefault},
		{TierFull, Signals{USPrivacy: "YY"}, TierFull, ReasonDefault},
		{TierAggregate, Signals{Consent: "1"}, TierFull, ReasonConsent},
		{TierAggregate, Signals{Consent: "1", GPC: "1"}, TierAggregate, ReasonGPC}, // an opt-out wins
		{TierAggregate, Signals{Consent: "1", USPrivacy: "1yyy"}, TierAggregate, ReasonCCPAOptOut},
		{TierFull, Signals{Consent: "1"}, TierFull, ReasonDefault},
		{TierAggregate, Signals{Consent: "GRANTED"}, TierFull, ReasonConsent},
		// Any word that does not give consent refuses it (a tester's CMP
		// sent "denied" and was tracked in full).
		{TierFull, Signals{Consent: "denied"}, TierAggregate, ReasonNoConsent},
		{TierFull, Signals{Consent: "no"}, TierAggregate, ReasonNoConsent},
		{TierFull, Signals{Consent: " 1"}, TierAggregate, ReasonNoConsent},
		{TierFull, Signals{Consent: "0.0"}, TierAggregate, ReasonNoConsent},
		{TierAggregate, Signals{Consent: "yes please"}, TierAggregate, ReasonNoConsent},
	} {
		tier, reason := Decide(tc.def, tc.s)
		if tier != tc.tier || reason != tc.reason {
			t.Errorf("Decide(%v, %+v) = %v, %s; want %v, %s", tc.def, tc.s, tier, reason, tc.tier, tc.reason)
		}
	}
	for _, s := range []string{"full", "aggregate"} {
		if tier, ok := ParseTier(s); !ok || tier.String() != s {
			t.Errorf("ParseTier(%q) = %v, %v", s, tier, ok)
		}
	}
	if _, ok := ParseTier("none"); ok {
		t.Error(`ParseTier("none") succeeded`)
	}
}

func TestSalts(t *testing.T) {
	day := Day(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	s := NewSalt(day, [16]byte{0: 1, 15: 2})
	if got := s.String(); got != "2026-11-30:01000000000000000000000000000002" {
		t.Errorf("String() = %q", got)
	}
	back, err := ParseSalt(s.String() + "\n")
	if err != nil || back != s {
		t.Errorf("ParseSalt(String()) = %v, %v; want %v", back, err, s)
	}
	for _, bad := range []string{"", "2026-11-30", "2026-11-30:0100000000000000000000000000000", "2026-11-30:0100000000000000000000000000000G",
		"2026-11-30:01000000000000000000000000000002x", "2026-13-30:01000000000000000000000000000002", "2026-11-30 01000000000000000000000000000002",
		"2026-11-30:00000000000000000000000000000000", "2026-11-30:0100000000000000000000000000000A"} {
		if _, err := ParseSalt(bad); err == nil {
			t.Errorf("ParseSalt(%q) succeeded", bad)
		}
	}
}

func TestIDs(t *testing.T) {
	midnight := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	day := Day(midnight)
	salts := Salts{NewSalt(day-1, [16]byte{1}), NewSalt(day, [16]byte{2})}
	ip := netip.MustParseAddr("203.0.113.9")
	ua := "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"

	id, prev, ok := IDs(&salts, midnight.Add(10*time.Minute), "a.example", ip, ua)
	if !ok || id == 0 || prev == 0 || id == prev {
		t.Fatalf("10 min after midnight: %x %x %v", id, prev, ok)
	}
	// The previous day's id of 00:10 is that day's id of 23:50.
	yID, _, _ := IDs(&salts, midnight.Add(-10*time.Minute), "a.example", ip, ua)
	if yID != prev {
		t.Errorf("23:50 id %x, 00:10 previous id %x: a visit across midnight cannot be joined", yID, prev)
	}
	if id2, prev2, _ := IDs(&salts, midnight.Add(VisitWindow), "a.example", ip, ua); id2 != id || prev2 != 0 {
		t.Errorf("past the window: %x %x; want %x 0", id2, prev2, id)
	}
	// Every input changes the id.
	for _, other := range []uint64{
		VisitorID(salts[1], "b.example", ip, ua),
		VisitorID(salts[1], "a.example", netip.MustParseAddr("203.0.113.10"), ua),
		VisitorID(salts[1], "a.example", ip, ua+" "),
		VisitorID(NewSalt(day, [16]byte{3}), "a.example", ip, ua),
	} {
		if other == id {
			t.Errorf("a different input gave the same id %x", id)
		}
	}
	// site "ab" + ua "c" and site "a" + ua "bc" differ: the separator.
	if VisitorID(salts[1], "ab", ip, "c") == VisitorID(salts[1], "a", ip, "bc") {
		t.Error("site and user agent run together")
	}
	if SaltKey(day-1) != SaltKey(day+1) || SaltKey(day) == SaltKey(day+1) || SaltKey(-1) != SaltKey(1) {
		t.Error("yesterday's and tomorrow's salts must share an entry, today's not")
	}
	if _, _, ok := IDs(&salts, midnight.Add(48*time.Hour), "a.example", ip, ua); ok {
		t.Error("an id without a salt for the day")
	}
	if n := testing.AllocsPerRun(100, func() { IDs(&salts, midnight, "a.example", ip, ua) }); n != 0 {
		t.Errorf("IDs allocates %v times", n)
	}
}

func FuzzParseSalt(f *testing.F) {
	f.Add("2026-11-30:01000000000000000000000000000002")
	f.Add("9999-99-99:zz")
	f.Fuzz(func(t *testing.T, s string) {
		salt, err := ParseSalt(s)
		if err != nil {
			return
		}
		if again, err := ParseSalt(salt.String()); err != nil || again != salt {
			t.Fatalf("%q -> %v -> %q: %v", s, salt, salt.String(), err)
		}
	})
}

// TestOverWarning: yesterday's salt is Over 30 minutes after midnight;
// the module and the Worker, which give now less RotationGrace, warn of
// it only once the day's rotation should have run.
func TestOverWarning(t *testing.T) {
	midnight := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	today := Day(midnight)
	for _, c := range []struct {
		salt  int32
		after time.Duration // since midnight
		over  bool
		warn  bool // with RotationGrace
	}{
		{today, 23 * time.Hour, false, false},
		{today + 1, time.Hour, false, false},
		{today - 1, 29 * time.Minute, false, false},
		{today - 1, 31 * time.Minute, true, false},
		{today - 1, RotationGrace + 31*time.Minute, true, true},
		{today - 2, 0, true, true},
	} {
		s, now := NewSalt(c.salt, [16]byte{1}), midnight.Add(c.after)
		w := OverWarning(SaltKeys[0], s, now.Add(-RotationGrace), "edgepixel-salt")
		if s.Over(now) != c.over || (w != "") != c.warn || c.warn && !strings.Contains(w, s.Date()) {
			t.Errorf("salt of %s at %v after midnight: over %v, warning %q; want over %v, a warning %v", s.Date(), c.after, s.Over(now), w, c.over, c.warn)
		}
	}
	if w := OverWarning(SaltKeys[0], Salt{}, midnight, "x"); w != "" {
		t.Errorf("no salt: %q", w)
	}
}
