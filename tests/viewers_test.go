package tests

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/stack"
)

// Removing a viewer token from the running aggregator's
// --dashboard-viewers-file ends its bearer use and the sessions made with
// it, without a restart, as the README says; the other token keeps
// working.
func TestViewerTokenRemovedFromTheFile(t *testing.T) {
	const gone, stays = "viewer-token-gone-0123456789", "viewer-token-stays-0123456789"
	viewers := filepath.Join(t.TempDir(), "viewers")
	if err := os.WriteFile(viewers, []byte(gone+" demo\n"+stays+" demo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stack.Options{NoPop: true, NoRedis: true, NoClickHouse: true,
		AggregatorArgs: []string{"--dashboard-viewers-file", viewers}})
	status := func(c *http.Client, tok string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.DashboardURL+"/api/counts", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(s.DashboardURL+"/login", url.Values{"token": {gone}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || status(browser, "") != 200 || status(http.DefaultClient, gone) != 200 {
		t.Fatalf("the viewer token does not work before its removal (login %d)", resp.StatusCode)
	}

	if err := os.WriteFile(viewers, []byte(stays+" demo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the removed token refused", func() (bool, string) {
		code := status(http.DefaultClient, gone)
		return code == 401, http.StatusText(code)
	})
	if code := status(browser, ""); code != 401 {
		t.Errorf("a session of the removed token: %d, want 401", code)
	}
	if code := status(http.DefaultClient, stays); code != 200 {
		t.Errorf("the token that stays: %d, want 200", code)
	}
}
