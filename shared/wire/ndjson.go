package wire

import (
	"strconv"
	"unicode/utf8"

	"github.com/edgepixel/edgepixel/shared/event"
)

// The NDJSON lines the edge writes to a log endpoint, which the
// aggregator's /ingest/ndjson reads (Fastly's real-time log streaming and
// the POP's log endpoints deliver them in batches). An event line is
// event.Event's JSON form, empty strings and zero numbers left out:
//
//	{"event_id":"0190...","ts_ms":1764000000000,"site":"example.com","name":"pageview",...}
//
// A line written by an instance that counts may carry that instance's
// counts for the event's site at the event's time, so that one write both
// delivers the event and reports the counts (the journal writes one line
// per hit, before the answer):
//
//	{...,"counts":{"instance":"0190...","hits":12,"events":12,"drops":{"buffer_full":1}}}
//
// A counters line reports counts on its own (hits that carried no event,
// and the counts of batches delivered through the fallback endpoint):
//
//	{"type":"counters","instance":"0190...","pop":"FRA","sites":[{"site":"example.com","ts_ms":1764000000000,"hits":12,"events":11,"drops":{"bad_json":1},"notes":{"no_salt":11}}]}
//
// "notes" counts accepted events by a condition that did not drop them
// (CounterNoted).
//
// An aggregator from before counters ignores "counts" (unknown members
// are skipped) and keeps a counters line as a bad row (it has no ts_ms of
// its own), so old aggregators store every event and lose nothing but the
// counts.
//
// The lines are built by hand rather than with encoding/json: the edge
// writes one per hit, and reflection-based encoding cost more than the
// rest of the hit under WebAssembly (and is heavy for TinyGo).

// The keys of the edge's configuration (Fastly's config store
// "edgepixel") that name the log endpoints the lines go to. The journal
// takes a line per hit before the answer and counts as delivered once
// written, so it must reach the aggregator (the POP's --log-endpoint);
// the fallback takes the batches the backend did not; log_endpoint, when
// set, replaces the backend altogether.
const (
	ConfigJournal             = "journal"
	ConfigFallbackLogEndpoint = "fallback_log_endpoint"
	ConfigLogEndpoint         = "log_endpoint"
)

// TypeCounters is the "type" of a counters line.
const TypeCounters = "counters"

// AppendEventLine appends e as one NDJSON line, without the newline. With
// c not nil, the line carries c (the counts of e.Site in instance inst;
// c.Site is e's and is not written again, nor is c.Time when it is e's).
// A client-named event's time is its client id's (event.ID.ForTier),
// which may be hours before the edge's clock: the counts then carry their
// own ts_ms, or the instance's running totals would fall at that time.
func AppendEventLine(dst []byte, e *event.Event, inst event.ID, c *SiteCounts) []byte {
	dst = append(dst, '{')
	first := true
	for i := range event.Fields {
		f := &event.Fields[i]
		switch f.Kind {
		case event.KindID:
			dst = appendKey(dst, f.JSON, &first)
			dst = appendID(dst, e.ID)
		case event.KindTime:
			dst = appendKey(dst, f.JSON, &first)
			dst = strconv.AppendInt(dst, e.Time, 10)
		case event.KindString:
			if s := *f.Str(e); s != "" {
				dst = appendKey(dst, f.JSON, &first)
				dst = AppendJSONString(dst, s)
			}
		case event.KindUint:
			if v := f.Uint(e); v != 0 {
				dst = appendKey(dst, f.JSON, &first)
				dst = strconv.AppendUint(dst, v, 10)
			}
		}
	}
	if c != nil {
		dst = appendKey(dst, "counts", &first)
		dst = append(dst, `{"instance":`...)
		dst = appendID(dst, inst)
		if c.Time != e.Time {
			dst = append(dst, `,"ts_ms":`...)
			dst = strconv.AppendInt(dst, c.Time, 10)
		}
		dst = appendCounts(dst, c)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// countersLineStart begins every counters line (AppendCountersLine).
const countersLineStart = `{"type":"` + TypeCounters + `","instance":`

// IsCountersLine reports whether line is a counters line as
// AppendCountersLine writes it: an instance's counts and no event.
func IsCountersLine(line []byte) bool {
	return len(line) >= len(countersLineStart) && string(line[:len(countersLineStart)]) == countersLineStart
}

// AppendCountersLine appends c as one counters line, without the newline.
func AppendCountersLine(dst []byte, c *Counters) []byte {
	dst = append(dst, countersLineStart...)
	dst = appendID(dst, c.Instance)
	dst = append(dst, `,"pop":`...)
	dst = AppendJSONString(dst, c.Pop)
	dst = append(dst, `,"sites":[`...)
	for i := range c.Sites {
		s := &c.Sites[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"site":`...)
		dst = AppendJSONString(dst, s.Site)
		dst = append(dst, `,"ts_ms":`...)
		dst = strconv.AppendInt(dst, s.Time, 10)
		dst = appendCounts(dst, s)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendCounts appends ,"hits":H,"events":E[,"drops":{...}][,"notes":{...}].
func appendCounts(dst []byte, c *SiteCounts) []byte {
	dst = append(dst, `,"hits":`...)
	dst = strconv.AppendUint(dst, c.Hits, 10)
	dst = append(dst, `,"events":`...)
	dst = strconv.AppendUint(dst, c.Events, 10)
	dst = appendReasons(dst, `,"drops":{`, c.Drops)
	return appendReasons(dst, `,"notes":{`, c.Notes)
}

// appendReasons appends key and ds as a JSON object of counts by reason,
// nothing when ds is empty.
func appendReasons(dst []byte, key string, ds []Drop) []byte {
	if len(ds) == 0 {
		return dst
	}
	dst = append(dst, key...)
	for i, d := range ds {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, d.Reason)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, d.N, 10)
	}
	return append(dst, '}')
}

func appendKey(dst []byte, key string, first *bool) []byte {
	if !*first {
		dst = append(dst, ',')
	}
	*first = false
	dst = append(dst, '"')
	dst = append(dst, key...) // field names are plain snake_case
	return append(dst, '"', ':')
}

// appendID appends id as a JSON string in the canonical form.
func appendID(dst []byte, id event.ID) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&0x0F])
	}
	return append(dst, '"')
}

// AppendJSONString appends s as a JSON string (RFC 8259): quotes,
// backslashes and control characters escaped, bytes that are not UTF-8
// written as U+FFFD, as encoding/json does.
func AppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
