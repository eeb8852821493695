package pop

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// Probe sends its request as a guest's send would go (the backend URL's
// path a prefix, override_host, the URL's host otherwise) and records
// its outcome where Degraded reads it.
func TestProbe(t *testing.T) {
	type seen struct{ method, path, host, hdr, body string }
	got := make(chan seen, 4)
	status := http.StatusUnauthorized
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 16)
		n, _ := r.Body.Read(b)
		got <- seen{r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Probe"), string(b[:n])}
		w.WriteHeader(status)
		fmt.Fprint(w, strings.Repeat("x", 100<<10)) // read and discarded
	}))
	defer srv.Close()
	m, err := fastlytoml.Parse([]byte(fmt.Sprintf(`manifest_version = 3
[local_server.backends.plain]
url = %q
[local_server.backends.pathed]
url = "%s/base"
override_host = "agg.example"
`, srv.URL, srv.URL)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{transport: newTransport()}
	s.backends = newBackends(m, s.transport)
	ctx := context.Background()
	h := http.Header{"X-Probe": {"1"}}
	for _, c := range []struct {
		backend string
		want    seen
	}{
		{"plain", seen{"POST", "/ingest?x=1", "aggregator", "1", "body"}},
		{"pathed", seen{"POST", "/base/ingest?x=1", "agg.example", "1", "body"}},
	} {
		code, answer, err := s.Probe(ctx, c.backend, http.MethodPost, "http://aggregator/ingest?x=1", h, []byte("body"))
		if code != status || err != nil || len(answer) != probeBody || answer[0] != 'x' {
			t.Fatalf("%s: %d, %d bytes of the answer, %v", c.backend, code, len(answer), err)
		}
		if g := <-got; g != c.want {
			t.Errorf("%s: the backend saw %+v, want %+v", c.backend, g, c.want)
		}
	}
	if d := strings.Join(s.Degraded(), "\n"); !strings.Contains(d, "backend plain: 1 request failing") || !strings.Contains(d, "backend pathed: 1 request failing") {
		t.Errorf("after two refusals, Degraded says:\n%s", d)
	}
	status = http.StatusOK
	if code, _, err := s.Probe(ctx, "plain", http.MethodPost, "http://aggregator/ingest", nil, nil); code != 200 || err != nil {
		t.Fatalf("%d %v", code, err)
	}
	<-got
	if d := strings.Join(s.Degraded(), "\n"); strings.Contains(d, "backend plain") {
		t.Errorf("after a success, Degraded still lists it:\n%s", d)
	}
	// A static https backend with ca_certificate trusts it (it was read,
	// then ignored: a tester's self-signed aggregator was refused).
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	mt, err := fastlytoml.Parse([]byte(fmt.Sprintf("manifest_version = 3\n[local_server.backends.own_ca]\nurl = %q\nca_certificate = %q\n[local_server.backends.system_roots]\nurl = %q\n",
		tlsSrv.URL, caPEM, tlsSrv.URL)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &Server{transport: newTransport()}
	st.backends = newBackends(mt, st.transport)
	if code, _, err := st.Probe(ctx, "own_ca", http.MethodGet, "https://x/", nil, nil); code != 200 || err != nil {
		t.Errorf("the backend with ca_certificate: %d %v", code, err)
	}
	if _, _, err := st.Probe(ctx, "system_roots", http.MethodGet, "https://x/", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("the backend without: %v, want unknown authority", err)
	}
	if _, _, err := s.Probe(ctx, "nosuch", http.MethodPost, "http://aggregator/ingest", nil, nil); err == nil || !strings.Contains(err.Error(), `no backend "nosuch"`) {
		t.Errorf("an unknown backend: %v", err)
	}
}
