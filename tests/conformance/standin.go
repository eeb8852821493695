package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// The stand-in origin answers, on loopback, what compute-sdk-go's tests
// expect from Fastly's public test origins, which are out of reach here
// (no internet). The POP is pointed at it with --resolve, so the tests'
// own fastly.toml files, URLs and TLS names stay exactly as Fastly wrote
// them; only the address dialled changes. It serves HTTPS with a
// certificate for those names from a CA made for the run, which the POP
// trusts through SSL_CERT_FILE.
//
// What each route answers comes from reading the tests (integration_tests
// in compute-sdk-go v1.9.0); the comments name the test.

// StandInHosts are the public origins the SDK's tests use.
var StandInHosts = []string{
	"compute-sdk-test-backend.edgecompute.app",
	"http-me.fastly.dev",
	"http.edgecompute.app",
	"example.com",
	"example.org",
}

// StandIn is a running stand-in origin.
type StandIn struct {
	Addr  string // 127.0.0.1:port
	CAPEM []byte // the CA to trust for it
	srv   *http.Server
}

// StartStandIn listens on a free loopback port.
func StartStandIn() (*StandIn, error) {
	caPEM, cert, err := standInCert(StandInHosts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &StandIn{Addr: ln.Addr().String(), CAPEM: caPEM}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(standIn),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:          nil,
	}
	go s.srv.ServeTLS(ln, "", "")
	return s, nil
}

// Close stops it.
func (s *StandIn) Close() error { return s.srv.Close() }

// Resolve is the POP's --resolve list (comma-separated, as
// EDGEPIXEL_POP_RESOLVE takes it) sending port 443 of every stand-in host
// to the stand-in.
func (s *StandIn) Resolve() string {
	var out []string
	for _, h := range StandInHosts {
		out = append(out, h+":443:"+s.Addr)
	}
	return strings.Join(out, ",")
}

func standIn(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch host {
	case "compute-sdk-test-backend.edgecompute.app":
		testBackend(w, r)
	case "http-me.fastly.dev", "http.edgecompute.app":
		httpMe(w, r)
	default: // example.com, example.org: configured, never asked
		io.WriteString(w, "stand-in for "+host+"\n")
	}
}

// testBackend is compute-sdk-test-backend.edgecompute.app.
func testBackend(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h := w.Header()
	switch r.URL.Path {
	case "/": // backend TestDynamicBackend; streaming_close's second request
		io.WriteString(w, "Compute SDK Test Backend")
	case "/async_select_1": // async_select
		h.Set("FooName", "FooValue")
	case "/async_select_2":
		h.Set("BarName", "BarValue")
	case "/byte_repeater": // each byte comes back doubled: "112233445566778899001122\n\n"
		io.WriteString(w, "123456789012\n")
	case "/request_upstream": // request_upstream TestRequestUpstream
		h.Set("OriginHeader", "OriginValue")
		h.Set("x-cat", "meow, nyan, mrrow, miau")
		io.WriteString(w, "Hello from Origin")
	case "/streaming_close": // vowels are removed: "wll smth\n"
		io.WriteString(w, "well smooth\n")
	default:
		http.NotFound(w, r)
	}
}

// httpMe is http-me.fastly.dev and http.edgecompute.app: /echo/?body=X
// answers X (kvstore); any other path echoes the request as
// pretty-printed JSON with lower-case header names (internal_debug looks
// for `"foobar": "quxzot",`; request_upstream TestRequestUpstreamBody
// reads headers.content-length and headers.transfer-encoding, which must
// say how the body came over the wire).
func httpMe(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.HasPrefix(r.URL.Path, "/echo") {
		io.WriteString(w, r.URL.Query().Get("body"))
		return
	}
	headers := map[string]string{"host": r.Host}
	for k, v := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	if len(r.TransferEncoding) > 0 {
		// net/http takes Transfer-Encoding out of the header map.
		headers["transfer-encoding"] = strings.Join(r.TransferEncoding, ", ")
	}
	js, err := json.MarshalIndent(map[string]any{
		"method":  r.Method,
		"url":     "https://" + r.Host + r.URL.RequestURI(),
		"headers": headers,
		"body":    string(body),
	}, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(js)
}

// standInCert makes a CA and a certificate it signs for hosts.
func standInCert(hosts []string) (caPEM []byte, cert tls.Certificate, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgepixel conformance stand-in CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	sorted := append([]string(nil), hosts...)
	sort.Strings(sorted)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: sorted[0]},
		DNSNames:     sorted,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, fmt.Errorf("stand-in certificate: %w", err)
	}
	cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, nil
}
