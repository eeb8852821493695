package ingest

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// A share of BodyPeak holds a body up to MaxBody while it is read: a body's
// buffer grows by doubling and holds the old and the new buffer at once,
// so under --max-body 9MiB a body of 8-9 MiB needs 8+16 = 24 MiB, and the
// share of twice --max-body the server gave by default (a reviewer's
// finding) refused it 503 overloaded on every retry.
func TestBodyPeakHoldsMaxBody(t *testing.T) {
	const maxBody = 9 << 20
	if BodyPeak(maxBody) <= 2*maxBody {
		t.Fatalf("BodyPeak(%d) = %d", maxBody, BodyPeak(maxBody))
	}
	budget := NewBudget(256<<20, BodyPeak(maxBody))
	h := New(Config{Secret: secret, Spool: &memSpool{}, MaxBody: maxBody, Budget: budget})
	var evs []event.Event
	for size := 0; size < 8<<20+(100<<10); size += 2060 { // ~8.1 MiB, under MaxBody
		e := newEvent(t, "demo")
		e.URL = "https://example.com/" + strings.Repeat("a", 2000)
		evs = append(evs, e)
	}
	body := wire.Append(nil, evs)
	for attempt := 1; attempt <= 3; attempt++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(body, time.Now().Unix(), secret))
		if w.Code != 200 {
			t.Errorf("attempt %d: a %d-byte body (max %d) answered %d %s", attempt, len(body), maxBody, w.Code, strings.TrimSpace(w.Body.String()))
		}
	}
	if budget.Used() != 0 {
		t.Fatalf("budget leaked %d", budget.Used())
	}
}
