package guard

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewAuthLimiter(AuthConfig{Rate: 2, Burst: 3, MaxClients: 4, Now: func() time.Time { return now }})
	const a = "192.0.2.1:1000"
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("refused after %d failures, burst 3", i)
		}
		l.Fail(a, CredSignature)
	}
	ok, after := l.Allow("192.0.2.1:2000") // another port, same client
	if ok || after <= 0 || after > time.Second {
		t.Fatalf("after the burst: ok %v retry after %v", ok, after)
	}
	if ok, _ := l.Allow("192.0.2.2:1000"); !ok {
		t.Fatal("another client refused")
	}
	now = now.Add(after)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("still refused after Retry-After")
	}
	// Successes cost nothing: only Fail draws.
	for range 100 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatal("refused without failing")
		}
	}

	// Bounded memory: past MaxClients, new clients share one bucket of
	// 16 bursts; clients whose buckets are full again are forgotten.
	for i := range 4 {
		l.Fail(fmt.Sprintf("198.51.100.%d:1", i), CredAdminToken)
	}
	for i := range 48 {
		l.Fail(fmt.Sprintf("203.0.113.%d:1", i), CredAdminToken)
	}
	if len(l.buckets) > 4 {
		t.Fatalf("%d buckets, at most 4", len(l.buckets))
	}
	if ok, _ := l.Allow("203.0.113.200:1"); ok {
		t.Error("the shared bucket of untracked clients is empty, yet allowed")
	}
	now = now.Add(time.Minute) // everything refills
	l.Fail("203.0.113.201:1", CredAdminToken)
	if _, tracked := l.buckets["203.0.113.201"]; !tracked {
		t.Error("refilled buckets were not swept to make room")
	}
}

// The summary's addresses must read as addresses: "127.0.0.1:2" is a
// host and port, and an IPv6 prefix ends in digits and colons already.
func TestAuthSummaryAddresses(t *testing.T) {
	var buf bytes.Buffer
	l := NewAuthLimiter(AuthConfig{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	l.Fail("127.0.0.1:41000", CredAdminToken)
	l.Fail("127.0.0.1:41001", CredAdminToken)
	l.Fail("[2001:db8::1]:443", CredAdminToken)
	l.Summarize()
	if want := `most="127.0.0.1=2 2001:db8::/64=1"`; !strings.Contains(buf.String(), want) {
		t.Fatalf("summary %q lacks %s", buf.String(), want)
	}
}
