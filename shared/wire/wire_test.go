package wire

import (
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

func sample(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		id, _ := event.NewID(int64(1_700_000_000_000+i), rand.Reader)
		out[i] = event.Event{
			ID: id, Time: int64(1_700_000_000_000 + i), Site: "demo", Name: event.KindPageview,
			URL: "https://example.com/a?x=" + strings.Repeat("é", i%5), Referrer: "https://news.ycombinator.com/",
			UserAgent: "Mozilla/5.0", ClientIP: "192.0.2.0", Country: "NL", UTMSource: "hn",
			UTMMedium: "social", UTMCampaign: "launch", Pop: "local", Props: `{"k":1}`,
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 500} {
		in := sample(n)
		b := Append(nil, in)
		out, err := Decode(nil, b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if n == 0 {
			out = []event.Event{}
			in = []event.Event{}
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("n=%d: round trip differs", n)
		}
		if c, err := Count(b); err != nil || c != n {
			t.Fatalf("Count = %d, %v", c, err)
		}
	}
}

// A newer sender may append fields to an event; this version skips them.
func TestDecodeSkipsUnknownTrailingFields(t *testing.T) {
	in := sample(2)
	var b []byte
	b = append(b, Magic...)
	b = append(b, 2)
	for i := range in {
		body := appendEvent(nil, &in[i])
		body = append(body, 3, 'n', 'e', 'w')
		b = appendUvarint(b, len(body))
		b = append(b, body...)
	}
	out, err := Decode(nil, b)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("decode with extra fields: %v", err)
	}
}

func appendUvarint(b []byte, n int) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

func TestDecodeRejects(t *testing.T) {
	good := Append(nil, sample(2))
	cases := map[string][]byte{
		"empty":          nil,
		"bad magic":      []byte("XXXX\x00"),
		"version 0":      []byte("EPB0\x00"),
		"truncated":      good[:len(good)-3],
		"trailing":       append(append([]byte{}, good...), 0),
		"huge count":     append([]byte(Magic), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"count too big":  appendUvarint([]byte(Magic), MaxEvents+1),
		"count vs bytes": appendUvarint([]byte(Magic), 5),
	}
	for name, b := range cases {
		if _, err := Decode(nil, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// A later format says so, where "bad magic" told a tester nothing.
	if _, err := Decode(nil, []byte("EPB9\x00")); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `batch format "EPB9" is newer than this aggregator reads (EPB1, EPB2): upgrade it`) {
		t.Errorf("a later format: %v", err)
	}
	if _, err := Decode(nil, []byte("EPB0\x00")); err == nil || strings.Contains(err.Error(), "newer") {
		t.Errorf("EPB0 is no later format: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, sample(1)))
	f.Add(Append(nil, sample(3)))
	f.Add([]byte(Magic))
	f.Add(v1Batch(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := Decode(nil, b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a batch that decodes the same.
		again, err := Decode(nil, Append(nil, evs))
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range evs {
			if !reflect.DeepEqual(evs[i], again[i]) {
				t.Fatalf("event %d differs after re-encode", i)
			}
		}
	})
}

func TestSignVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := Append(nil, sample(1))
	now := time.Unix(1_700_000_000, 0)
	sig := Sign(secret, now.Unix(), body)
	ts := "1700000000"
	if err := Verify(secret, ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := Verify([]byte("other"), ts, sig, body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	altered := append([]byte{}, body...)
	altered[len(altered)-1] ^= 1
	if err := Verify(secret, ts, sig, altered, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered body: %v", err)
	}
	// A replay with a new timestamp needs a new signature.
	if err := Verify(secret, "1700000030", sig, body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("re-stamped: %v", err)
	}
	if err := Verify(secret, ts, sig, body, now.Add(2*time.Minute), time.Minute); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	for _, hdr := range [][2]string{{"nope", sig}, {"", sig}, {ts, ""}} {
		if err := Verify(secret, hdr[0], hdr[1], body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("timestamp %q signature %q: %v", hdr[0], hdr[1], err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	batch := Append(nil, sample(1000))
	b.SetBytes(int64(len(batch)))
	var evs []event.Event
	for b.Loop() {
		evs, _ = Decode(evs[:0], batch)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}
