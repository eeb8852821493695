package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

const sampleJSON = `{"Action":"start","Package":"m/x/a"}
{"Action":"run","Package":"m/x/a","Test":"TestOK"}
{"Action":"output","Package":"m/x/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"m/x/a","Test":"TestOK"}
{"Action":"run","Package":"m/x/a","Test":"TestSub"}
{"Action":"run","Package":"m/x/a","Test":"TestSub/one"}
{"Action":"output","Package":"m/x/a","Test":"TestSub/one","Output":"    boom\n"}
{"Action":"fail","Package":"m/x/a","Test":"TestSub/one"}
{"Action":"fail","Package":"m/x/a","Test":"TestSub"}
{"Action":"run","Package":"m/x/a","Test":"TestKnown"}
{"Action":"fail","Package":"m/x/a","Test":"TestKnown"}
{"Action":"run","Package":"m/x/a","Test":"TestFixed"}
{"Action":"pass","Package":"m/x/a","Test":"TestFixed"}
{"Action":"fail","Package":"m/x/a"}
{"Action":"output","Package":"m/x/b","Output":"panic: host crashed\n"}
{"Action":"fail","Package":"m/x/b"}
{"Action":"skip","Package":"m/x/c"}
# m/d
not json: a build error
`

func TestJudge(t *testing.T) {
	var finished []string
	pkgs, err := ParseJSON(strings.NewReader(sampleJSON), func(p *Package) { finished = append(finished, p.Path+":"+p.Result) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(finished, " ") != "m/x/a:fail m/x/b:fail m/x/c:skip" {
		t.Errorf("progress %v", finished)
	}
	var v Verdict
	Judge(&v, "integration", "m", "x", pkgs, []Expectation{
		{"x/a", "TestKnown", "a product the POP lacks"},
		{"x/a", "TestFixed", "was broken"},
		{"x/a", "TestGone", "renamed upstream"},
		{"y/a", "TestOther", "another suite's"},
	})
	rows := map[string]Row{}
	for _, r := range v.Rows {
		rows[r.Package] = r
	}
	if r := rows["x/a"]; r.Passed != 2 || r.Failed != 1 || r.Skipped != 1 {
		t.Errorf("row a %+v", r)
	}
	if r := rows["x/b"]; r.Failed != 1 {
		t.Errorf("a crash outside any test must count as a failure: %+v", r)
	}
	if r := rows["x/c"]; r.Result != "skip" || r.Failed != 0 {
		t.Errorf("row c %+v", r)
	}
	all := strings.Join(v.Problems, "\n")
	for _, want := range []string{"x/a TestSub failed", "boom", "x/a TestFixed is listed as an expected failure", "x/a TestGone is listed",
		"x/b failed outside its tests", "host crashed", "not json: a build error"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(v.Problems) != 5 {
		t.Errorf("%d problems:\n%s", len(v.Problems), all)
	}
	if len(v.Skipped) != 1 || !strings.Contains(v.Skipped[0], "x/a TestKnown: a product the POP lacks") {
		t.Errorf("skipped %q", v.Skipped)
	}
}

func TestExpectedHasReasons(t *testing.T) {
	for _, e := range Expected {
		if e.Package == "" || !strings.HasPrefix(e.Test, "Test") || len(e.Reason) < 40 {
			t.Errorf("%+v: every expected failure names its package and test and says why", e)
		}
	}
}

// TestStandIn checks the answers the SDK's tests look for, over TLS with
// the stand-in's CA, reaching it by name as the POP does with --resolve.
func TestStandIn(t *testing.T) {
	s, err := StartStandIn()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("bad CA PEM")
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.Addr)
		},
	}}
	get := func(method, url string, body io.Reader) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, body)
		req.Header.Set("Foobar", "quxzot")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const be = "https://compute-sdk-test-backend.edgecompute.app"
	if _, b := get("GET", be+"/", nil); b != "Compute SDK Test Backend" {
		t.Errorf("/ %q", b)
	}
	if r, b := get("GET", be+"/request_upstream", nil); b != "Hello from Origin" || r.Header.Get("OriginHeader") != "OriginValue" ||
		r.Header.Get("X-Cat") != "meow, nyan, mrrow, miau" {
		t.Errorf("/request_upstream %q %v", b, r.Header)
	}
	if r, _ := get("GET", be+"/async_select_2", nil); r.Header.Get("BarName") != "BarValue" {
		t.Errorf("/async_select_2 %v", r.Header)
	}
	if _, b := get("GET", "https://http-me.fastly.dev/echo/?body=hello,+world", nil); b != "hello, world" {
		t.Errorf("echo %q", b)
	}
	if _, b := get("GET", "https://http-me.fastly.dev/anything/1/", nil); !strings.Contains(b, `"foobar": "quxzot",`) {
		t.Errorf("anything %s", b)
	}
	_, b := get("POST", "https://http.edgecompute.app/anything/anything/", io.NopCloser(strings.NewReader("AAAA")))
	var echo struct{ Headers map[string]string }
	if err := json.Unmarshal([]byte(b), &echo); err != nil || echo.Headers["transfer-encoding"] != "chunked" || echo.Headers["content-length"] != "" {
		t.Errorf("chunked POST echo %v %s", err, b)
	}
	_, b = get("POST", "https://http.edgecompute.app/anything/anything/", strings.NewReader("AAAA"))
	echo.Headers = nil
	if err := json.Unmarshal([]byte(b), &echo); err != nil || echo.Headers["content-length"] != "4" || echo.Headers["transfer-encoding"] != "" {
		t.Errorf("sized POST echo %v %s", err, b)
	}
	if !strings.Contains(s.Resolve(), "http-me.fastly.dev:443:"+s.Addr) {
		t.Errorf("Resolve %q", s.Resolve())
	}
}
