package pixel

import (
	"bytes"
	"encoding/json"

	"github.com/edgepixel/edgepixel/shared/event"
)

// postedEvent is one event as a browser sends it, by POST or sendBeacon.
// Short names keep beacons small; long ones are accepted too.
type postedEvent struct {
	Site     string          `json:"site"`
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	Ref      string          `json:"ref"`
	Referrer string          `json:"referrer"`
	Props    json.RawMessage `json:"props"`
}

// FromJSON builds the events of a POST body: one JSON object or an array of
// them. Content types are not trusted (sendBeacon sends text/plain), only the
// bytes. A body with any invalid event is rejected whole, so a client never
// has to guess which of its events were counted.
func FromJSON(body []byte, m *Meta) ([]event.Event, string) {
	if len(body) > MaxPostBody {
		return nil, DropTooLarge
	}
	body = bytes.TrimSpace(body)
	var posted []postedEvent
	switch {
	case len(body) > 0 && body[0] == '[':
		if err := json.Unmarshal(body, &posted); err != nil {
			return nil, DropBadJSON
		}
	case len(body) > 0 && body[0] == '{':
		var one postedEvent
		if err := json.Unmarshal(body, &one); err != nil {
			return nil, DropBadJSON
		}
		posted = []postedEvent{one}
	default:
		return nil, DropBadJSON
	}
	if len(posted) == 0 {
		return nil, DropBadJSON
	}
	if len(posted) > MaxPostEvents {
		return nil, DropTooManyEvents
	}
	out := make([]event.Event, 0, len(posted))
	for i := range posted {
		p := &posted[i]
		props, ok := compactObject(p.Props)
		if !ok {
			return nil, DropBadJSON
		}
		e, err := base(m)
		if err != nil {
			return nil, err.Error()
		}
		ref := p.Ref
		if ref == "" {
			ref = p.Referrer
		}
		page := p.URL
		if page == "" {
			page = m.Referer
		}
		if drop := finish(&e, p.Site, p.Name, page, ref); drop != "" {
			return nil, drop
		}
		e.Props = props
		out = append(out, e)
	}
	return out, ""
}

// compactObject accepts an absent props value or a JSON object that fits
// the limit, and returns it compacted.
func compactObject(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	if raw[0] != '{' {
		return "", false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() > event.MaxPropsLen {
		return "", false
	}
	return buf.String(), true
}
