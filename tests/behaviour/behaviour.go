// Package behaviour is edgepixel's one table of edge behaviour: requests,
// the answers they must get and the events they must store. Every edge
// platform runs it, the Fastly module under the POP and the Cloudflare
// worker under workerd (tests/workers_test.go), and each must store the
// same rows; the fields only a platform knows (event id, time, pop,
// country) are left out of the comparison.
package behaviour

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Case is one request, sent Repeat times (at least once), and what it
// must give. In Target, Header values and Body, "{site}" is the case's
// own site (Site) and "{uuid}" a UUIDv7 fresh for each run of the table.
type Case struct {
	Name   string
	Method string
	Target string // path and query
	Header map[string]string
	Body   string
	Repeat int

	Status int
	Drop   string // the X-Edgepixel-Drop header, "" for none
	// AllowOrigin is the Access-Control-Allow-Origin wanted, "" for none.
	AllowOrigin string
	// Rows are the events stored, in any order.
	Rows []Row
}

// Row is a stored event without the platform's fields.
type Row struct {
	Site, Name, URL, Referrer, UserAgent, ClientIP string
	UTMSource, UTMMedium, UTMCampaign, Props       string
	Method                                         string
}

// RowOf is e's Row.
func RowOf(e *event.Event) Row {
	return Row{Site: e.Site, Name: e.Name, URL: e.URL, Referrer: e.Referrer, UserAgent: e.UserAgent, ClientIP: e.ClientIP,
		UTMSource: e.UTMSource, UTMMedium: e.UTMMedium, UTMCampaign: e.UTMCampaign, Props: e.Props, Method: e.Method}
}

// Site is the site a case stores its events under in one run: platforms
// that share an aggregator keep their rows apart by it.
func Site(run string, i int) string { return fmt.Sprintf("bt-%s-%02d", run, i) }

// Expand replaces the placeholders in s.
func Expand(s, site, uuid string) string {
	return strings.NewReplacer("{site}", site, "{uuid}", uuid).Replace(s)
}

// UA is the user agent every case sends unless it says otherwise.
const UA = "edgepixel-behaviour/1.0"

// ClientIP is what every stored event's client_ip must be: empty, as no
// address leaves the edge unless a site opts in (edge/pixel, ip=prefix).
const ClientIP = ""

// LockedSite has its own CORS list in both platforms' configuration:
// only LockedOrigin may post for it, and by default no origin may.
const (
	LockedSite   = "bt-locked"
	LockedOrigin = "https://shop.example"
	CORSOrigins  = LockedSite + "=" + LockedOrigin
)

func row(name, url, ref, method string) Row {
	return Row{Site: "{site}", Name: name, URL: url, Referrer: ref, UserAgent: UA, ClientIP: ClientIP, Method: method}
}

// Cases is the table.
var Cases = []Case{
	{Name: "pixel", Method: "GET", Target: "/p.gif?site={site}&url=https%3A%2F%2Fex.test%2Fa&ref=https%3A%2F%2Fref.test%2F",
		Status: 200, Rows: []Row{row("pageview", "https://ex.test/a", "https://ref.test/", "GET")}},
	{Name: "pixel with UTM tags", Method: "GET", Target: "/p.gif?site={site}&url=" + url.QueryEscape("https://ex.test/?utm_source=news&utm_medium=mail&utm_campaign=spring"),
		Status: 200, Rows: []Row{func() Row {
			// Stored without the campaign parameters, which have their columns.
			r := row("pageview", "https://ex.test/", "", "GET")
			r.UTMSource, r.UTMMedium, r.UTMCampaign = "news", "mail", "spring"
			return r
		}()}},
	{Name: "pixel page from Referer, named event", Method: "GET", Target: "/p?site={site}&e=signup", Header: map[string]string{"Referer": "https://ex.test/from-referer"},
		Status: 200, Rows: []Row{row("signup", "https://ex.test/from-referer", "", "GET")}},
	{Name: "open pixel with its own UTM tags, page not from the mailbox", Method: "GET",
		Target: "/p.gif?site={site}&e=open&open=email&utm_source=newsletter&utm_medium=email&utm_campaign=issue-42",
		Header: map[string]string{"Referer": "https://mail.example/inbox/id/AQQk123"},
		Status: 200, Rows: []Row{func() Row {
			// The Referer is the reader's mailbox: its origin alone is the
			// referrer, and it is no page.
			r := row("open", "", "https://mail.example/", "GET")
			r.UTMSource, r.UTMMedium, r.UTMCampaign = "newsletter", "email", "issue-42"
			return r
		}()}},
	{Name: "open pixel with an unknown open=", Method: "GET", Target: "/p.gif?site={site}&e=open&open=1", Status: 200, Drop: wire.DropBadOpen},
	{Name: "pixel of a javascript: page", Method: "GET", Target: "/p.gif?site={site}&url=javascript%3Aalert(1)", Status: 200, Drop: wire.DropBadURL},
	{Name: "pixel of a page saved to disk", Method: "GET", Target: "/p.gif?site={site}&url=file%3A%2F%2F%2FUsers%2Falice%2Fsaved.html", Status: 200, Drop: wire.DropBadURL},
	{Name: "pixel of a data: referrer", Method: "GET", Target: "/p.gif?site={site}&url=https%3A%2F%2Fex.test%2F&ref=%20Data%3Atext%2Fhtml%2Cx", Status: 200, Drop: wire.DropBadURL},
	{Name: "pixel at /i", Method: "GET", Target: "/i?site={site}&url=https%3A%2F%2Fex.test%2Fi",
		Status: 200, Rows: []Row{row("pageview", "https://ex.test/i", "", "GET")}},
	{Name: "pixel HEAD is no visit", Method: "HEAD", Target: "/p.gif?site={site}", Status: 200, Drop: wire.DropHeadRequest},
	{Name: "pixel without site", Method: "GET", Target: "/p.gif?url=https%3A%2F%2Fex.test%2F", Status: 200, Drop: wire.DropMissingSite},
	{Name: "pixel blank site", Method: "GET", Target: "/p.gif?site=%20", Status: 200, Drop: wire.DropMissingSite},
	{Name: "pixel POST", Method: "POST", Target: "/p.gif?site={site}", Status: 405, Drop: wire.DropBadMethod},
	{Name: "event with props", Method: "POST", Target: "/e", Header: map[string]string{"Content-Type": "application/json"},
		Body:   `{"site":"{site}","name":"signup","url":"https://shop.test/j","ref":"https://ref.test/","props":{"plan":"pro","n":2}}`,
		Status: 204, AllowOrigin: "*", Rows: []Row{func() Row {
			r := row("signup", "https://shop.test/j", "https://ref.test/", "POST")
			r.Props = `{"plan":"pro","n":2}`
			return r
		}()}},
	{Name: "beacon as text/plain", Method: "POST", Target: "/e", Header: map[string]string{"Content-Type": "text/plain;charset=UTF-8"},
		Body: `{"site":"{site}","name":"beacon","url":"https://shop.test/b"}`, Status: 204, AllowOrigin: "*",
		Rows: []Row{row("beacon", "https://shop.test/b", "", "POST")}},
	{Name: "three events in one POST", Method: "POST", Target: "/e",
		Body:   `[{"site":"{site}","name":"a","url":"https://shop.test/1"},{"site":"{site}","name":"b","url":"https://shop.test/2"},{"site":"{site}","name":"c","url":"https://shop.test/3","referrer":"https://r.test/"}]`,
		Status: 204, AllowOrigin: "*", Rows: []Row{row("a", "https://shop.test/1", "", "POST"), row("b", "https://shop.test/2", "", "POST"), row("c", "https://shop.test/3", "https://r.test/", "POST")}},
	{Name: "a retried event_id is stored once", Method: "POST", Target: "/e", Repeat: 3,
		Body:   `{"site":"{site}","name":"retried","url":"https://shop.test/r","event_id":"{uuid}"}`,
		Status: 204, AllowOrigin: "*", Rows: []Row{row("retried", "https://shop.test/r", "", "POST")}},
	{Name: "a retried Idempotency-Key is stored once", Method: "POST", Target: "/e", Repeat: 2, Header: map[string]string{pixel.HeaderIdempotencyKey: `"{uuid}"`},
		Body:   `[{"site":"{site}","name":"k1"},{"site":"{site}","name":"k2"}]`,
		Status: 204, AllowOrigin: "*", Rows: []Row{row("k1", "", "", "POST"), row("k2", "", "", "POST")}},
	{Name: "event page from Referer", Method: "POST", Target: "/e", Header: map[string]string{"Referer": "https://shop.test/from-referer"},
		Body: `{"site":"{site}","name":"x"}`, Status: 204, AllowOrigin: "*", Rows: []Row{row("x", "https://shop.test/from-referer", "", "POST")}},
	{Name: "browser origin echoed", Method: "POST", Target: "/e", Header: map[string]string{"Origin": "https://any.example"},
		Body: `{"site":"{site}","name":"o"}`, Status: 204, AllowOrigin: "https://any.example", Rows: []Row{row("o", "", "", "POST")}},
	{Name: "bad JSON", Method: "POST", Target: "/e", Body: `{"site":`, Status: 400, Drop: wire.DropBadJSON, AllowOrigin: "*"},
	{Name: "props not an object", Method: "POST", Target: "/e", Body: `{"site":"{site}","props":[1]}`, Status: 400, Drop: wire.DropBadJSON, AllowOrigin: "*"},
	{Name: "event without site", Method: "POST", Target: "/e", Body: `{"name":"x"}`, Status: 400, Drop: wire.DropMissingSite, AllowOrigin: "*"},
	{Name: "event of a javascript: page", Method: "POST", Target: "/e", Body: `[{"site":"{site}","url":"https://ex.test/ok"},{"site":"{site}","url":"java\tscript:alert(1)"}]`, Status: 400, Drop: wire.DropBadURL, AllowOrigin: "*"},
	{Name: "bad event_id", Method: "POST", Target: "/e", Body: `{"site":"{site}","event_id":"not-a-uuid"}`, Status: 400, Drop: wire.DropBadEventID, AllowOrigin: "*"},
	{Name: "too many events", Method: "POST", Target: "/e", Body: "[" + strings.Repeat(`{"site":"{site}"},`, pixel.MaxPostEvents) + `{"site":"{site}"}]`,
		Status: 413, Drop: wire.DropTooManyEvents, AllowOrigin: "*"},
	{Name: "body too large", Method: "POST", Target: "/e", Body: `{"site":"{site}","url":"` + strings.Repeat("a", pixel.MaxPostBody) + `"}`,
		Status: 413, Drop: wire.DropTooLarge, AllowOrigin: "*"},
	{Name: "GET of the event path", Method: "GET", Target: "/e", Status: 405, Drop: wire.DropBadMethod, AllowOrigin: "*"},
	{Name: "preflight", Method: "OPTIONS", Target: "/e?site={site}", Header: map[string]string{"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
		Status: 204, AllowOrigin: "https://any.example"},
	{Name: "preflight for a locked site, allowed origin", Method: "OPTIONS", Target: "/e?site=" + LockedSite, Header: map[string]string{"Origin": LockedOrigin},
		Status: 204, AllowOrigin: LockedOrigin},
	{Name: "preflight for a locked site, other origin", Method: "OPTIONS", Target: "/e?site=" + LockedSite, Header: map[string]string{"Origin": "https://evil.example"},
		Status: 403, Drop: wire.DropOriginNotAllowed},
	{Name: "POST for a locked site from another origin", Method: "POST", Target: "/e", Header: map[string]string{"Origin": "https://evil.example"},
		Body: `{"site":"` + LockedSite + `"}`, Status: 403, Drop: wire.DropOriginNotAllowed},
	{Name: "healthz", Method: "GET", Target: "/healthz", Status: 200},
	{Name: "tracker script", Method: "GET", Target: "/s.js", Status: 200, AllowOrigin: "*"}, // public, for subresource integrity from any page
	{Name: "unknown path", Method: "GET", Target: "/favicon.ico", Status: 404},
}
