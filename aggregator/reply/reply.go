// Package reply writes the aggregator's JSON answers.
package reply

import (
	"encoding/json"
	"net/http"
)

// JSON answers status with v as its JSON body, one line, not to be
// cached. v is encoded before the status is written: a value JSON cannot
// hold (a time after year 9999, a NaN) answers 500 saying so, where
// encoding into the response would have sent status with an empty body.
func JSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": "the answer could not be written as JSON: " + err.Error(), "reason": "internal"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
