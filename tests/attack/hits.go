package attack

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// NormalSource is the address normal clients come from; attacks use
// other addresses, so per-client limits do not count them together.
const NormalSource = "127.0.0.2"

// NormalSite is the site of Hits' events.
const NormalSite = "normal"

// Hits is normal traffic through the POP: pixel GETs and, every fifth, an
// event POST, each with a url of its own, over keep-alive connections from
// NormalSource. Every hit answered as it should be (the GIF with no
// X-Edgepixel-Drop, or 204) is remembered by its url, so that a test can
// check it is stored exactly once.
type Hits struct {
	pop     string
	clients []*http.Client
	seq     atomic.Int64

	mu       sync.Mutex
	answered map[string]bool // url → stored? (false: not answered as it should be)
}

// NewHits prepares workers keep-alive clients for the POP at popURL.
func NewHits(popURL string, workers int) *Hits {
	h := &Hits{pop: popURL, answered: map[string]bool{}}
	for range workers {
		h.clients = append(h.clients, Client(NormalSource, 10*time.Second))
	}
	return h
}

// Run sends hits from every worker back to back until ctx ends; each
// hit's url names phase. A hit not answered within 10 s fails.
func (h *Hits) Run(ctx context.Context, phase string) *Result {
	return Load(ctx, len(h.clients), func(w int) error { return h.one(w, phase) })
}

// For is Run for d.
func (h *Hits) For(d time.Duration, phase string) *Result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return h.Run(ctx, phase)
}

// Send sends n hits one after another from the first worker.
func (h *Hits) Send(phase string, n int) *Result {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	return Load(ctx, 1, func(int) error {
		if n--; n == 0 {
			cancel()
		}
		return h.one(0, phase)
	})
}

func (h *Hits) one(w int, phase string) error {
	n := h.seq.Add(1)
	page := fmt.Sprintf("https://normal.example/%s/%d", Slug(phase), n)
	err := h.hit(h.clients[w], page, n%5 == 0)
	h.mu.Lock()
	h.answered[page] = err == nil
	h.mu.Unlock()
	return err
}

func (h *Hits) hit(c *http.Client, page string, post bool) error {
	var req *http.Request
	want := http.StatusOK
	if post {
		body := fmt.Sprintf(`{"site":%q,"name":"normal","url":%q}`, NormalSite, page)
		req, _ = http.NewRequest(http.MethodPost, h.pop+"/e", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		// With a key the edge stores the event once however often it is
		// sent, so net/http may replay the POST when the POP closed an idle
		// keep-alive connection under it, as a browser would.
		key, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", key.String())
		want = http.StatusNoContent
	} else {
		req, _ = http.NewRequest(http.MethodGet, h.pop+"/p.gif?"+url.Values{"site": {NormalSite}, "url": {page}}.Encode(), nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != want:
		return fmt.Errorf("answered %s", resp.Status)
	case resp.Header.Get("X-Edgepixel-Drop") != "":
		return fmt.Errorf("not counted: %s", resp.Header.Get("X-Edgepixel-Drop"))
	}
	return nil
}

// Slug is name in lower case with each run of other characters than
// letters and digits made one "-": phase names in urls.
func Slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return b.String()
}

// Answered returns the urls of the hits answered as they should be and
// the number of the others.
func (h *Hits) Answered() (urls []string, others int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for u, ok := range h.answered {
		if ok {
			urls = append(urls, u)
		} else {
			others++
		}
	}
	return urls, others
}

// Close closes the clients' idle connections.
func (h *Hits) Close() {
	for _, c := range h.clients {
		c.CloseIdleConnections()
	}
}
