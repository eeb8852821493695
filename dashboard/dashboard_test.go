package dashboard

import (
	"io"
	"net/http/httptest"
	"regexp"
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

// The page switches between the login form and the app with the hidden
// attribute; a stylesheet display rule for an element that starts hidden
// overrides the attribute (author rules beat the browser's [hidden]), so
// the logged-out page showed the empty app and controls beside the form.
func TestHiddenElementsStayHidden(t *testing.T) {
	read := func(name string) string {
		f, err := FS().Open(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		return string(b)
	}
	html, css := read("index.html"), read("style.css")
	hiddenRule := regexp.MustCompile(`\[hidden\]\s*\{[^}]*display:\s*none\s*!important`)
	if hiddenRule.MatchString(css) {
		return
	}
	tag := regexp.MustCompile(`<[a-z]+\s[^>]*>`)
	isHidden := regexp.MustCompile(`\shidden(\s|>|=)`)
	attr := regexp.MustCompile(`\s(id|class)="([^"]+)"`)
	for _, el := range tag.FindAllString(html, -1) {
		if !isHidden.MatchString(el) {
			continue
		}
		for _, a := range attr.FindAllStringSubmatch(el, -1) {
			for _, name := range strings.Fields(a[2]) {
				sel := "#" + name
				if a[1] == "class" {
					sel = "." + name
				}
				rule := regexp.MustCompile(`(?m)(^|[\s,}])` + regexp.QuoteMeta(sel) + `\s*\{[^}]*display:`)
				if rule.MatchString(css) {
					t.Errorf("%s starts hidden but style.css sets its display, and has no [hidden] { display: none !important } rule", sel)
				}
			}
		}
	}
}
