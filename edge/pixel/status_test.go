package pixel

import (
	"net/http"
	"testing"
)

// TestStatusAsNetHTTP checks the package's own methods, codes and reason
// phrases against net/http's, which the package does not import.
func TestStatusAsNetHTTP(t *testing.T) {
	for _, m := range [][2]string{{methodGet, http.MethodGet}, {methodHead, http.MethodHead}, {methodOptions, http.MethodOptions}, {methodPost, http.MethodPost}} {
		if m[0] != m[1] {
			t.Errorf("method %q, net/http %q", m[0], m[1])
		}
	}
	for _, c := range [][2]int{
		{statusOK, http.StatusOK}, {statusNoContent, http.StatusNoContent}, {statusNotModified, http.StatusNotModified},
		{statusBadRequest, http.StatusBadRequest}, {statusForbidden, http.StatusForbidden}, {statusNotFound, http.StatusNotFound},
		{statusMethodNotAllowed, http.StatusMethodNotAllowed}, {statusRequestEntityTooLarge, http.StatusRequestEntityTooLarge},
		{statusTooManyRequests, http.StatusTooManyRequests}, {statusInternalServerError, http.StatusInternalServerError},
		{statusServiceUnavailable, http.StatusServiceUnavailable},
	} {
		if c[0] != c[1] {
			t.Errorf("status %d, net/http %d", c[0], c[1])
		}
		if got, want := statusText(c[0]), http.StatusText(c[0]); c[0] >= 400 && got != want {
			t.Errorf("statusText(%d) = %q, net/http %q", c[0], got, want)
		}
	}
}
