package reply

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestJSON(t *testing.T) {
	w := httptest.NewRecorder()
	JSON(w, http.StatusCreated, map[string]int{"n": 1})
	if w.Code != http.StatusCreated || w.Body.String() != `{"n":1}`+"\n" || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %q %v", w.Code, w.Body, w.Header())
	}
	// Values JSON cannot hold: a 500 that says why, never the status
	// asked for with an empty body.
	for _, v := range []any{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), math.NaN()} {
		w := httptest.NewRecorder()
		JSON(w, http.StatusOK, map[string]any{"v": v})
		var got map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != http.StatusInternalServerError || err != nil || got["error"] == "" {
			t.Errorf("%v: %d %q %v", v, w.Code, w.Body, err)
		}
	}
}
