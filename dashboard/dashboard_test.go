package dashboard

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesPage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, want := range map[string]string{
		"/":          `id="total"`,
		"/app.js":    "/live",
		"/style.css": ".status",
	} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %s, missing %q", path, resp.Status, want)
		}
	}
	// No external assets: everything is served from the same origin.
	page, _ := FS().Open("index.html")
	b, _ := io.ReadAll(page)
	if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
		t.Error("index.html references an external URL")
	}
}
