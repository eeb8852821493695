package campaign

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Result
	}{
		{"https://example.com/", Result{}},
		{"https://example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&utm_term=shoes&utm_content=header",
			Result{Source: "newsletter", Medium: "email", Campaign: "spring_sale", Term: "shoes", Content: "header"}},
		// Keys in any case, '+' and percent-escapes, ';' separators.
		{"https://example.com/p?UTM_Source=Google+Ads;Utm_Medium=cpc&utm_campaign=Black%20Friday%E2%80%942025",
			Result{Source: "Google Ads", Medium: "cpc", Campaign: "Black Friday—2025"}},
		// HTML-escaped separators from an email's source.
		{"https://example.com/?utm_source=mailchimp&amp;utm_medium=email&amp;utm_campaign=weekly",
			Result{Source: "mailchimp", Medium: "email", Campaign: "weekly"}},
		{"https://example.com/?utm_source=a&AMP;utm_medium=b", Result{Source: "a", Medium: "b"}},
		// Repeated keys: the first non-empty value.
		{"/?utm_source=&utm_source=first&utm_source=second", Result{Source: "first"}},
		// In the fragment, and the query wins over it.
		{"https://example.com/#utm_source=fb&utm_medium=social", Result{Source: "fb", Medium: "social"}},
		{"https://example.com/#/pricing?utm_campaign=spa", Result{Campaign: "spa"}},
		{"https://example.com/?utm_source=q#utm_source=f&utm_term=t", Result{Source: "q", Term: "t"}},
		// Percent-encoded key, malformed escape kept, spaces trimmed.
		{"?utm%5Fsource=x&utm_medium=50%+off&utm_campaign=+%20a%20+", Result{Source: "x", Medium: "50% off", Campaign: "a"}},
		// Invalid UTF-8 and control characters become U+FFFD.
		{"?utm_source=%FF%00x", Result{Source: "\uFFFD\uFFFDx"}},
		// Click ids by kind.
		{"https://shop.example/?gclid=Cj0KCQ&utm_source=google", Result{Source: "google", ClickIDs: GCLID}},
		{"https://shop.example/?fbclid=IwAR1&MSCLKID=abc&li_fat_id=1&ScCid=2&gbraid=x&wbraid=y",
			Result{ClickIDs: FBCLID | MSCLKID | LIFATID | SCCID | GBRAID | WBRAID}},
		{"https://shop.example/?ttclid=1&twclid=2&yclid=3&epik=4&rdt_cid=5&irclickid=6&dclid=7&srsltid=8",
			Result{ClickIDs: TTCLID | TWCLID | YCLID | EPIK | RDTCID | IRCLICKID | DCLID | SRSLTID}},
		{"gclid=1", Result{ClickIDs: GCLID}},
		{"https://example.com/gclid=1", Result{}},
		{"", Result{}},
		{"?&&=&utm_=x", Result{}},
	} {
		if got := Parse(tc.url); got != tc.want {
			t.Errorf("Parse(%q)\n got  %+v\n want %+v", tc.url, got, tc.want)
		}
	}
}

func TestLongValueBounded(t *testing.T) {
	r := Parse("?utm_campaign=" + strings.Repeat("é", 300))
	if len(r.Campaign) > MaxLen || !utf8.ValidString(r.Campaign) {
		t.Errorf("campaign %d bytes, valid %t", len(r.Campaign), utf8.ValidString(r.Campaign))
	}
}

func TestClickIDs(t *testing.T) {
	if s := (GCLID | FBCLID).String(); s != "gclid,fbclid" {
		t.Errorf("String = %q", s)
	}
	if ClickIDs(0).String() != "" {
		t.Error("empty set has a name")
	}
	if FBCLID.Paid() || SRSLTID.Paid() || (FBCLID | SRSLTID).Paid() {
		t.Error("fbclid or srsltid counted as paid")
	}
	if !(FBCLID | GCLID).Paid() || !MSCLKID.Paid() {
		t.Error("gclid or msclkid not paid")
	}
	if ClickIDKind("GCLID") != GCLID || ClickIDKind("li%5Ffat%5Fid") != LIFATID || ClickIDKind("gclidx") != 0 {
		t.Error("ClickIDKind")
	}
}

func TestIsTracking(t *testing.T) {
	for k, want := range map[string]bool{
		"utm_source": true, "UTM_ID": true, "utm_source_platform": true, "gclid": true, "fbclid": true,
		"mc_eid": true, "_hsenc": true, "mtm_campaign": true, "pk_kwd": true, "_gl": true, "utm%5Fmedium": true,
		"utm_": false, "id": false, "page": false, "q": false, "ref": false, "": false,
		strings.Repeat("a", 100): false,
	} {
		if IsTracking(k) != want {
			t.Errorf("IsTracking(%q) = %t", k, !want)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	u := "https://example.com/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring&gclid=abc"
	if n := testing.AllocsPerRun(100, func() { Parse(u) }); n != 0 {
		t.Errorf("Parse allocates %v times on a URL without escapes", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"?utm_source=a&amp;utm_medium=b", "#utm_campaign=%ZZ", "?utm%5Fsource=%E2%80", "gclid=1;fbclid=2", "?&;=&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Parse(s)
		for _, v := range []string{r.Source, r.Medium, r.Campaign, r.Term, r.Content} {
			if len(v) > MaxLen || !utf8.ValidString(v) {
				t.Fatalf("Parse(%q): value %q (%d bytes)", s, v, len(v))
			}
		}
		if r.ClickIDs >= 1<<numClickIDs {
			t.Fatalf("Parse(%q): click ids %b", s, r.ClickIDs)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	u := "https://example.com/landing/page?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&gclid=Cj0KCQiA"
	b.ReportAllocs()
	for b.Loop() {
		Parse(u)
	}
}

func TestValueAndHasUTM(t *testing.T) {
	if got := Value("  spring\x00 sale "); got != Parse("utm_campaign=+spring%00+sale+").Campaign || got == "" {
		t.Errorf("Value %q, Parse %q", got, Parse("utm_campaign=+spring%00+sale+").Campaign)
	}
	if (Result{}).HasUTM() || Parse("gclid=x").HasUTM() || !Parse("utm_content=a").HasUTM() {
		t.Error("HasUTM")
	}
}
