package event

// Kind is how a field is held in Event, sent on the wire and stored.
type Kind uint8

const (
	KindID     Kind = iota + 1 // ID: 16 bytes; a ClickHouse UUID
	KindTime                   // int64 unix milliseconds
	KindString                 // string of at most Field.Max bytes
	// KindUint is an unsigned integer of Field.Bits bits (8, 16, 32 or
	// 64): a ClickHouse UInt8 ... UInt64, a JSON number, a varint on the
	// wire. Zero is "unknown" or "none".
	KindUint
)

// Field describes one field of Event. See the package doc for how to add
// one.
type Field struct {
	// Name is the Go field's name in Event.
	Name string
	// JSON is the field's name in JSON (Event's tag: NDJSON ingest, the
	// disk store, log streaming) and its ClickHouse column in the events
	// table.
	JSON string
	Kind Kind
	// Max bounds a string in bytes: the edge truncates to it, Validate
	// rejects longer. 0 for other kinds.
	Max int
	// CHType is the ClickHouse column type (18.16's types: no
	// LowCardinality without a setting there).
	CHType string
	// CHDefault is the ClickHouse DEFAULT expression of a column added
	// after schema version 1, the value rows stored before it read as; ""
	// for the original columns, which have the type's default.
	CHDefault string
	// CHAlias is the ALIAS expression of a column that ClickHouse
	// computes from other columns when it is read, storing nothing; ""
	// for a stored column. The loader does not write an ALIAS column;
	// the field still travels on the wire and in JSON as any other.
	CHAlias string
	// CHChanged is the schema version that changed the column's type or
	// kind in place (to CHType, or to the ALIAS CHAlias) after Since; 0
	// if none did. Rows stored before keep their values.
	CHChanged int
	// Since is the schema version that added the field: 1 for the
	// original ones. The wire format requires the fields of version 1 and
	// lets an event end before any later one (an older sender), which
	// then decodes as "".
	Since int
	// Str returns a pointer to the field in e, for KindString; nil for
	// other kinds. Encoders and decoders read and write through it.
	Str func(e *Event) *string
	// Bits is the width of a KindUint (8, 16, 32 or 64); 0 for other
	// kinds. A decoder refuses a larger value.
	Bits int
	// Uint and SetUint read and write a KindUint field; nil for other
	// kinds. SetUint's value fits Bits (the caller checks).
	Uint    func(e *Event) uint64
	SetUint func(e *Event, v uint64)
	// Transit marks a field that travels on the wire and in JSON but is
	// not stored: no ClickHouse column (CHType, CHDefault are empty), no
	// migration adds one, the loader does not write it.
	Transit bool
}

// MaxUint is the largest value of a KindUint field.
func (f *Field) MaxUint() uint64 {
	if f.Bits >= 64 {
		return ^uint64(0)
	}
	return 1<<f.Bits - 1
}

// lc is the ClickHouse type of the strings that repeat from row to row: a
// dictionary per part stores each once and a small index per row
// (ClickHouse 18.16 needs allow_experimental_low_cardinality_type=1 to
// create such a column; the aggregator's migrations set it).
const lc = "LowCardinality(String)"

// VersionStorage is the schema version that made the events table
// smaller on disk: path became an ALIAS of url, stored no more.
//
// The String columns that repeat stay String on 18.16, although lc would
// store them in less: an aggregator of an earlier version, still running
// during a rolling upgrade, inserts them as String, which 18.16 fails to
// cast into a LowCardinality column ("Bad cast from type ColumnString");
// and the dashboard's rollup views, released and so never changed, cannot
// push a LowCardinality value into their String columns.
const VersionStorage = 6

// VersionLowCardinality is the schema version that made user_agent and
// pop LowCardinality in place (issue 11): both repeat from row to row and
// no rollup view reads them, so the released views that cannot take a
// LowCardinality value (see VersionStorage) are untouched. An aggregator
// of an earlier version, still running, fails its inserts ("Bad cast from
// type ColumnString") and keeps their events in its spool to retry: it
// loses nothing and stores them once it is upgraded. The other repeating
// strings stay String: the views read them, and 18.16 crashes on an array
// of tuples that mixes a LowCardinality function result (domain(referrer))
// with Strings, as the dimensions' view builds.
const VersionLowCardinality = 9

// PathOfURL is path's ALIAS expression: the path of url as
// edge/enrich/pageurl.Normalize writes it, which the edge's path always
// equals (pageurl's tests hold it to that): after an optional scheme and
// "//authority", up to the query. An RE2 expression, as ClickHouse's
// extract takes.
const PathOfURL = `extract(url, '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?(?://[^/?]*)?([^?]*)')`

// Fields lists Event's fields in their order in Event, on the wire and in
// ClickHouse's events table (which also has ts, a DateTime derived from
// ts_ms to partition by). Rows are only ever appended.
var Fields = [...]Field{
	{Name: "ID", JSON: "event_id", Kind: KindID, CHType: "UUID", Since: 1},
	{Name: "Time", JSON: "ts_ms", Kind: KindTime, CHType: "UInt64", Since: 1},
	{Name: "Site", JSON: "site", Kind: KindString, Max: MaxSiteLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Site }},
	{Name: "Name", JSON: "name", Kind: KindString, Max: MaxNameLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Name }},
	{Name: "URL", JSON: "url", Kind: KindString, Max: MaxURLLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.URL }},
	{Name: "Referrer", JSON: "referrer", Kind: KindString, Max: MaxReferrerLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Referrer }},
	{Name: "UserAgent", JSON: "user_agent", Kind: KindString, Max: MaxUALen, CHType: lc, CHChanged: VersionLowCardinality, Since: 1,
		Str: func(e *Event) *string { return &e.UserAgent }},
	{Name: "ClientIP", JSON: "client_ip", Kind: KindString, Max: MaxIPLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.ClientIP }},
	{Name: "Country", JSON: "country", Kind: KindString, Max: MaxShortLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Country }},
	{Name: "UTMSource", JSON: "utm_source", Kind: KindString, Max: MaxShortLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.UTMSource }},
	{Name: "UTMMedium", JSON: "utm_medium", Kind: KindString, Max: MaxShortLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.UTMMedium }},
	{Name: "UTMCampaign", JSON: "utm_campaign", Kind: KindString, Max: MaxShortLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.UTMCampaign }},
	{Name: "Pop", JSON: "pop", Kind: KindString, Max: MaxShortLen, CHType: lc, CHChanged: VersionLowCardinality, Since: 1,
		Str: func(e *Event) *string { return &e.Pop }},
	{Name: "Props", JSON: "props", Kind: KindString, Max: MaxPropsLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Props }},
	{Name: "Method", JSON: "method", Kind: KindString, Max: MaxMethodLen, CHType: "String", CHDefault: "''", Since: 2,
		Str: func(e *Event) *string { return &e.Method }},

	// Schema version 5: what the edge derives from a hit (issue 11).
	// Old rows read "" and 0: not known then.
	str5("Browser", "browser", MaxEnumLen, func(e *Event) *string { return &e.Browser }),
	str5("BrowserVersion", "browser_version", MaxEnumLen, func(e *Event) *string { return &e.BrowserVersion }),
	str5("OS", "os", MaxEnumLen, func(e *Event) *string { return &e.OS }),
	str5("OSVersion", "os_version", MaxEnumLen, func(e *Event) *string { return &e.OSVersion }),
	str5("Device", "device", MaxEnumLen, func(e *Event) *string { return &e.Device }),
	uint5("BotScore", "bot_score", 8, func(e *Event) uint64 { return uint64(e.BotScore) }, func(e *Event, v uint64) { e.BotScore = uint8(v) }),
	str5("BotReason", "bot_reason", MaxEnumLen, func(e *Event) *string { return &e.BotReason }),
	str5("ReferrerHost", "referrer_host", MaxHostLen, func(e *Event) *string { return &e.ReferrerHost }),
	str5("Channel", "channel", MaxEnumLen, func(e *Event) *string { return &e.Channel }),
	str5("Source", "source", MaxEnumLen, func(e *Event) *string { return &e.Source }),
	str5("ClickIDs", "click_ids", MaxEnumLen, func(e *Event) *string { return &e.ClickIDs }),
	{Name: "UTMTerm", JSON: "utm_term", Kind: KindString, Max: MaxShortLen, CHType: "String", CHDefault: "''", Since: 5,
		Str: func(e *Event) *string { return &e.UTMTerm }},
	{Name: "UTMContent", JSON: "utm_content", Kind: KindString, Max: MaxShortLen, CHType: "String", CHDefault: "''", Since: 5,
		Str: func(e *Event) *string { return &e.UTMContent }},
	{Name: "Path", JSON: "path", Kind: KindString, Max: MaxURLLen, CHType: "String", CHDefault: "''", CHAlias: PathOfURL, CHChanged: VersionStorage, Since: 5,
		Str: func(e *Event) *string { return &e.Path }},
	str5("Region", "region", MaxEnumLen, func(e *Event) *string { return &e.Region }),
	str5("City", "city", MaxEnumLen, func(e *Event) *string { return &e.City }),
	uint5("ASN", "asn", 32, func(e *Event) uint64 { return uint64(e.ASN) }, func(e *Event, v uint64) { e.ASN = uint32(v) }),
	uint5("VisitorID", "visitor_id", 64, func(e *Event) uint64 { return e.VisitorID }, func(e *Event, v uint64) { e.VisitorID = v }),
	uint5("PrevVisitorID", "prev_visitor_id", 64, func(e *Event) uint64 { return e.PrevVisitorID }, func(e *Event, v uint64) { e.PrevVisitorID = v }),
	str5("Tier", "tier", MaxEnumLen, func(e *Event) *string { return &e.Tier }),
	str5("ConsentReason", "consent_reason", MaxEnumLen, func(e *Event) *string { return &e.ConsentReason }),
	uint5("ClientTime", "client_ts_ms", 64, func(e *Event) uint64 { return e.ClientTime }, func(e *Event, v uint64) { e.ClientTime = v }),
	str5("ClientTimeReason", "client_ts_reason", MaxEnumLen, func(e *Event) *string { return &e.ClientTimeReason }),
	uint5("ScreenWidth", "screen_width", 16, func(e *Event) uint64 { return uint64(e.ScreenWidth) }, func(e *Event, v uint64) { e.ScreenWidth = uint16(v) }),
	str5("Signature", "signature", MaxEnumLen, func(e *Event) *string { return &e.Signature }),
	str5("MailOpen", "mail_open", MaxEnumLen, func(e *Event) *string { return &e.MailOpen }),
	uint5("ReferrerSpam", "referrer_spam", 8, func(e *Event) uint64 { return uint64(e.ReferrerSpam) }, func(e *Event, v uint64) { e.ReferrerSpam = uint8(v) }),
	{Name: "Copy", JSON: "copy", Kind: KindUint, Bits: 64, Transit: true, Since: VersionCopy,
		Uint: func(e *Event) uint64 { return e.Copy }, SetUint: func(e *Event, v uint64) { e.Copy = v }},
}

// VersionCopy is the schema version current when Copy was added; it adds
// no column (Transit).
const VersionCopy = 11

// str5 is a row of schema version 5 for a short, repeating string.
func str5(name, json string, max int, get func(*Event) *string) Field {
	return Field{Name: name, JSON: json, Kind: KindString, Max: max, CHType: lc, CHDefault: "''", Since: 5, Str: get}
}

// uint5 is a row of schema version 5 for an unsigned integer of bits bits.
func uint5(name, json string, bits int, get func(*Event) uint64, set func(*Event, uint64)) Field {
	return Field{Name: name, JSON: json, Kind: KindUint, Bits: bits, CHType: "UInt" + itoa(bits), CHDefault: "0", Since: 5, Uint: get, SetUint: set}
}

func itoa(n int) string {
	switch n {
	case 8:
		return "8"
	case 16:
		return "16"
	case 32:
		return "32"
	}
	return "64"
}
