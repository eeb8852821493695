package event

// Kind is how a field is held in Event, sent on the wire and stored.
type Kind uint8

const (
	KindID     Kind = iota + 1 // ID: 16 bytes; a ClickHouse UUID
	KindTime                   // int64 unix milliseconds
	KindString                 // string of at most Field.Max bytes
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
	// Since is the schema version that added the field: 1 for the
	// original ones. The wire format requires the fields of version 1 and
	// lets an event end before any later one (an older sender), which
	// then decodes as "".
	Since int
	// Str returns a pointer to the field in e, for KindString; nil for
	// other kinds. Encoders and decoders read and write through it.
	Str func(e *Event) *string
}

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
	{Name: "UserAgent", JSON: "user_agent", Kind: KindString, Max: MaxUALen, CHType: "String", Since: 1,
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
	{Name: "Pop", JSON: "pop", Kind: KindString, Max: MaxShortLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Pop }},
	{Name: "Props", JSON: "props", Kind: KindString, Max: MaxPropsLen, CHType: "String", Since: 1,
		Str: func(e *Event) *string { return &e.Props }},
	{Name: "Method", JSON: "method", Kind: KindString, Max: MaxMethodLen, CHType: "String", CHDefault: "''", Since: 2,
		Str: func(e *Event) *string { return &e.Method }},
}
