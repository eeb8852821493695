package attack

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// ForgedIngestHead is the head of a POST /ingest with the signature
// headers in the right form but a signature no secret made (what any
// stranger can send), extra header lines (each ending in CRLF) and the
// blank line that ends the head.
func ForgedIngestHead(extra string) []byte {
	sig := make([]byte, 32)
	rand.Read(sig)
	return []byte("POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: " + wire.ContentType + "\r\n" +
		wire.HeaderTimestamp + ": " + strconv.FormatInt(time.Now().Unix(), 10) + "\r\n" +
		wire.HeaderSignature + ": " + hex.EncodeToString(sig) + "\r\n" + extra + "\r\n")
}

// Signed is a request posting body to url signed with secret as the edge
// signs its batches (shared/wire), timestamped now.
func Signed(url, contentType string, secret, body []byte) *http.Request {
	ts := time.Now().Unix()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(wire.HeaderSignature, wire.Sign(secret, ts, body))
	return req
}

// Chunked frames body as one chunk and the last chunk (RFC 9112 section 7.1).
func Chunked(body string) string {
	return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
}

// Metric reads one series' value from a Prometheus text page at url
// (e.g. `edgepixel_pop_conns_open` or `x_total{reason="fd_limit"}`); a
// series not on the page is 0.
func Metric(url, series string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}
