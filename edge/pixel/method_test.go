package pixel

import (
	"testing"
	"time"
)

// Every event records the HTTP method of the hit that carried it.
func TestEventsCarryMethod(t *testing.T) {
	for _, tc := range []struct {
		method, path, q, body string
		events                int
	}{
		{"GET", "/p.gif", "site=a.com", "", 1},
		{"HEAD", "/p", "site=a.com", "", 0}, // answered, not a visit
		{"POST", "/e", "", `[{"site":"a.com"},{"site":"a.com","name":"signup"}]`, 2},
	} {
		b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
		h, _ := hit(tc.method, tc.path, tc.q, tc.body)
		Serve(h, nil, b, time.Now(), &Response{})
		if b.Len() != tc.events {
			t.Fatalf("%s %s: %d events", tc.method, tc.path, b.Len())
		}
		for _, e := range b.buffered(t) {
			if e.Method != tc.method {
				t.Errorf("%s %s: event method %q", tc.method, tc.path, e.Method)
			}
			if err := e.Validate(); err != nil {
				t.Errorf("%s %s: %v", tc.method, tc.path, err)
			}
		}
	}
}
