package clickhouse

import (
	"bytes"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/shared/event"
)

// referenceNative encodes evs with ch-go's own column types, as
// EncodeNative did before it wrote the columns straight from the events.
func referenceNative(evs []event.Event) []byte {
	ids := make(uuidCol, 0, len(evs))
	var ts proto.ColDateTime
	var tsMS proto.ColUInt64
	strs := make([]proto.ColStr, len(event.Fields))
	lcs := make([]*proto.ColLowCardinality[string], len(event.Fields))
	u8 := make([]proto.ColUInt8, len(event.Fields))
	u16 := make([]proto.ColUInt16, len(event.Fields))
	u32 := make([]proto.ColUInt32, len(event.Fields))
	u64 := make([]proto.ColUInt64, len(event.Fields))
	for j, f := range event.Fields {
		if f.CHType == "LowCardinality(String)" {
			lcs[j] = proto.NewLowCardinality[string](new(proto.ColStr))
		}
	}
	for i := range evs {
		e := &evs[i]
		ids = append(ids, e.ID)
		ts.Append(time.UnixMilli(e.Time))
		tsMS.Append(uint64(e.Time))
		for j, f := range event.Fields {
			switch {
			case lcs[j] != nil:
				lcs[j].Append(*f.Str(e))
			case f.Str != nil:
				strs[j].Append(*f.Str(e))
			case f.Bits == 8:
				u8[j].Append(uint8(f.Uint(e)))
			case f.Bits == 16:
				u16[j].Append(uint16(f.Uint(e)))
			case f.Bits == 32:
				u32[j].Append(uint32(f.Uint(e)))
			case f.Bits == 64:
				u64[j].Append(f.Uint(e))
			}
		}
	}
	input := proto.Input{{Name: "event_id", Data: ids}, {Name: "ts", Data: &ts}, {Name: "ts_ms", Data: &tsMS}}
	for j, f := range event.Fields {
		var col proto.ColInput
		switch {
		case f.CHAlias != "" || f.Transit: // computed by ClickHouse, or not stored: not written
			continue
		case lcs[j] != nil:
			col = lcs[j]
		case f.Str != nil:
			col = &strs[j]
		case f.Bits == 8:
			col = &u8[j]
		case f.Bits == 16:
			col = &u16[j]
		case f.Bits == 32:
			col = &u32[j]
		case f.Bits == 64:
			col = &u64[j]
		default:
			continue
		}
		input = append(input, proto.InputColumn{Name: f.JSON, Data: col})
	}
	var buf proto.Buffer
	blk := proto.Block{Columns: len(input), Rows: len(evs)}
	if err := blk.EncodeRawBlock(&buf, nativeRevision, input); err != nil {
		panic(err)
	}
	return buf.Buf
}

func nativeSample(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		ms := int64(1_750_000_000_123 + i*997)
		id, _ := event.NewID(ms, rand.Reader)
		evs[i] = event.Event{ID: id, Time: ms, Site: "s" + strings.Repeat("x", i%3), Name: "pageview",
			URL: "https://example.com/" + strings.Repeat("p", i*37%300), UserAgent: strings.Repeat("u", i%200),
			Country: "DE", Props: strings.Repeat("{}", i%90), Method: []string{"GET", "HEAD", "POST"}[i%3],
			Browser: []string{"Chrome", "Firefox", "", "Safari"}[i%4], BotScore: uint8(i), ASN: uint32(i * 7919),
			VisitorID: uint64(i) * 0x9E3779B97F4A7C15, ScreenWidth: uint16(i * 3),
			// more than 256 and than 65536 distinct values at the sizes tested
			City: strconv.Itoa(i % 70000), Region: strconv.Itoa(i % 300)}
	}
	return evs
}

func TestEncodeNativeMatchesColumns(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000, 70001} {
		evs := nativeSample(n)
		got, err := EncodeNative(evs)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceNative(evs); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: %d bytes differ from ch-go's columns (%d bytes)", n, len(got), len(want))
		}
	}
}

func BenchmarkEncodeNative(b *testing.B) {
	evs := nativeSample(50000)
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = appendNative(buf[:0], len(evs), eventsInput(evs)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkEncodeNativeColStr(b *testing.B) {
	evs := nativeSample(50000)
	for b.Loop() {
		referenceNative(evs)
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "rows/s")
}
