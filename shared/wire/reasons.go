package wire

// Drop reasons: why a hit or a POST was not (wholly) counted. The edge
// (edge/pixel, the Fastly module and the Cloudflare worker) reports them
// in the X-Edgepixel-Drop response header and counts them for the
// aggregator; they are stable strings of [a-z0-9_] (ValidReason):
// dashboards, alerts and metric labels key on them. This is the one
// list; every drop decision of edge/pixel passes through its
// Response.drop, and the aggregator shows each at 0 from its start
// (DropReasons).
const (
	DropMissingSite      = "missing_site"       // no site, or a blank one
	DropBadJSON          = "bad_json"           // a POST body that is not the events' JSON, or props not an object
	DropTooLarge         = "too_large"          // a POST body over edge/pixel's MaxPostBody
	DropTooManyEvents    = "too_many_events"    // a POST of more than edge/pixel's MaxPostEvents
	DropPropsTooLarge    = "props_too_large"    // props over event.MaxPropsLen once canonical (event.CleanProps)
	DropBadEventID       = "bad_event_id"       // an event_id or Idempotency-Key that event.ParseClientIDSkewed refuses
	DropOriginNotAllowed = "origin_not_allowed" // a browser origin not on the site's list (edge/pixel's Origins)
	DropHeadRequest      = "head_request"       // a HEAD of the pixel: answered, but no visit (link checkers, monitors)
	DropBadMethod        = "bad_method"
	DropBufferFull       = "buffer_full"
	DropReadError        = "read_error"
	DropContentEncoding  = "content_encoding" // a POST body with a Content-Encoding: the edge reads it as sent
	DropInternal         = "internal_error"   // the platform failed the edge (no random bytes for an id)
	DropUnknownSite      = "unknown_site"     // a site not in the configured list (edge/pixel's ConfigSites)
	DropRateLimited      = "rate_limited"     // over the per-client or per-site rate limit (edge/pixel's Config.RateLimited)
	DropUnsigned         = "unsigned"         // a pixel without signature for a site with sign=reject
	DropBadSignature     = "bad_pixel_signature"
	DropExpiredPixel     = "expired_pixel" // a signed pixel past its exp, for a site with sign=reject
	DropBadOpen          = "bad_open"      // a pixel's open= other than email or feed (edge/pixel's openFlag)
	DropBadURL           = "bad_url"       // a page url or referrer that names no web page: a javascript:, vbscript:, data:, file:, mailto: or about: URL (shared/urlescape's NoPage)
	// DropDeliveryFailed counts accepted events that no delivery path
	// took (batches, journal, fallback log endpoint) by the time their
	// instance ended; see edge/pixel's Batcher. No answer carries it.
	DropDeliveryFailed = "delivery_failed"
)

// Host drop reasons: requests the self-hosted POP (edge/pop) refuses
// itself, before the module sees them, with the same names as its
// edgepixel_pop_client_rejects_total labels. edgepixel-pop reports them
// to the aggregator as counters of its own under the site "" (it reads
// no site from a request it refused). On Fastly the platform refuses
// such requests and counts them nowhere the module can see.
const (
	DropURLTooLong     = "url_too_long"                  // 414: a URL over Fastly's limit
	DropHeaderTooLarge = "header_too_large"              // 431: a head over Fastly's limits
	DropBodyTooLarge   = "body_too_large"                // 413: a body over the POP's --max-request-body
	DropBodyMemory     = "body_memory"                   // 503: every client's body together over the POP's bound
	DropBodyIncomplete = "body_incomplete"               // a malformed chunked body, one not sent in time (408), or the client went away
	DropBadRequest     = "bad_request"                   // 400 from net/http: a malformed head
	DropUnsupportedTE  = "unsupported_transfer_encoding" // 501 from net/http
)

// Note reasons: why an accepted event lacks something it would normally
// carry. They are counted beside the events (edge/pixel's counters.go
// and Batcher), are stable [a-z0-9_] strings like the drop reasons, and
// do not stop the event from being stored.
const (
	// NoteNoSalt: the platform keeps visitor-id salts (edge/pixel's
	// Config.Salts is set) but has none for the hit's UTC day, so a
	// full-tier event with a client address is stored without a
	// visitor id.
	NoteNoSalt = "no_salt"
	// NoteClientClock: a client-named event (a POST's event_id or
	// Idempotency-Key) whose UUIDv7 time was out of bounds by the edge's
	// clock, which the edge moved by whole quarter hours
	// (event.ParseClientIDSkewed) rather than refuse: the event is stored
	// near the edge's time, not at the client's.
	NoteClientClock = "client_clock"
)

// DropReasons are all the drop reasons above, NoteReasons the note
// reasons: the aggregator declares each on /metrics at 0 from its start,
// so an alert on a reason's increase sees its first count.
var (
	DropReasons = []string{DropMissingSite, DropBadJSON, DropTooLarge, DropTooManyEvents, DropPropsTooLarge,
		DropBadEventID, DropOriginNotAllowed, DropHeadRequest, DropBadMethod, DropBufferFull, DropReadError,
		DropContentEncoding, DropInternal, DropUnknownSite, DropRateLimited, DropUnsigned, DropBadSignature,
		DropExpiredPixel, DropBadOpen, DropBadURL, DropDeliveryFailed,
		DropURLTooLong, DropHeaderTooLarge, DropBodyTooLarge, DropBodyMemory, DropBodyIncomplete, DropBadRequest, DropUnsupportedTE}
	NoteReasons = []string{NoteNoSalt, NoteClientClock}
)
