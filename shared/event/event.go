// Package event defines the one record edgepixel moves from the edge to
// storage: an Event, its ID, and the limits both sides enforce.
//
// The package has no dependencies beyond the standard library's basics so
// that the edge module stays small and TinyGo-compatible.
package event

import (
	"errors"
	"fmt"
)

// Kinds of event. A pixel hit is a pageview; a POSTed event carries its own
// name and is a custom event unless it says "pageview".
const (
	KindPageview = "pageview"
)

// Limits on field sizes. The edge truncates to them; the aggregator rejects
// events that exceed them (a forged or buggy sender), so a row in storage
// never holds more than this.
const (
	MaxSiteLen     = 100
	MaxNameLen     = 100
	MaxURLLen      = 2048
	MaxReferrerLen = 2048
	MaxUALen       = 512
	MaxIPLen       = 45  // the longest textual IPv6 address
	MaxShortLen    = 200 // UTM fields, country, pop
	MaxPropsLen    = 4096
)

// Event is one hit: a pixel request or one event of a POST, enriched at the
// edge. Strings are empty when unknown. Time is the edge's clock, not the
// visitor's, so that a skewed or forged client clock cannot move events.
//
// The JSON field names (one JSON object per line is what the aggregator's
// NDJSON ingest takes) are the ClickHouse column names.
type Event struct {
	ID        ID     `json:"event_id"`
	Time      int64  `json:"ts_ms"` // unix milliseconds at the edge
	Site      string `json:"site"`  // which site the hit is for
	Name      string `json:"name"`  // "pageview" or a custom event name
	URL       string `json:"url"`   // the page
	Referrer  string `json:"referrer"`
	UserAgent string `json:"user_agent"`
	// ClientIP is the visitor's address truncated at the edge (IPv4 to /24,
	// IPv6 to /48): enough for coarse abuse checks downstream, not enough to
	// identify a visitor.
	ClientIP    string `json:"client_ip"`
	Country     string `json:"country"` // ISO 3166-1 alpha-2 from the POP's geolocation
	UTMSource   string `json:"utm_source"`
	UTMMedium   string `json:"utm_medium"`
	UTMCampaign string `json:"utm_campaign"`
	Pop         string `json:"pop"`   // the POP that saw the hit
	Props       string `json:"props"` // a JSON object of custom properties, or ""
}

// ErrInvalid wraps every validation failure so callers can tell bad input
// from I/O errors.
var ErrInvalid = errors.New("invalid event")

// Validate reports whether e can be stored. It checks what the storage
// schema relies on; it does not judge plausibility (bots, spam).
func (e *Event) Validate() error {
	if e.ID.IsZero() {
		return fmt.Errorf("%w: missing id", ErrInvalid)
	}
	if e.Time <= 0 {
		return fmt.Errorf("%w: missing time", ErrInvalid)
	}
	if e.Site == "" {
		return fmt.Errorf("%w: missing site", ErrInvalid)
	}
	if e.Name == "" {
		return fmt.Errorf("%w: missing name", ErrInvalid)
	}
	for _, f := range [...]struct {
		name string
		v    string
		max  int
	}{
		{"site", e.Site, MaxSiteLen},
		{"name", e.Name, MaxNameLen},
		{"url", e.URL, MaxURLLen},
		{"referrer", e.Referrer, MaxReferrerLen},
		{"user_agent", e.UserAgent, MaxUALen},
		{"client_ip", e.ClientIP, MaxIPLen},
		{"country", e.Country, MaxShortLen},
		{"utm_source", e.UTMSource, MaxShortLen},
		{"utm_medium", e.UTMMedium, MaxShortLen},
		{"utm_campaign", e.UTMCampaign, MaxShortLen},
		{"pop", e.Pop, MaxShortLen},
		{"props", e.Props, MaxPropsLen},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, f.name, f.max)
		}
	}
	return nil
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // don't cut inside a multi-byte rune
		n--
	}
	return s[:n]
}
