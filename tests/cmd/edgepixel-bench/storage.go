package main

// Section "storage": ClickHouse bytes on disk per stored event, with every
// column of the schema, beside the table as the schema versions before the
// LowCardinality step (event.VersionLowCardinality) and the storage step
// (event.VersionStorage) left it, and beside the 15 columns events had
// before the enrichment (schema version 1), over the same generated
// events, each on a server compressing parts with zstd and on one with
// lz4.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	crand "crypto/rand"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// goalBytesPerEvent is issue 11's goal for an event with every column.
const goalBytesPerEvent = 40

// v1Columns are the events table's columns at schema version 1.
var v1Columns = "event_id, ts, ts_ms, site, name, url, referrer, user_agent, client_ip, country, utm_source, utm_medium, utm_campaign, pop, props"

// storageCorpus is what the generated hits are drawn from: a few sites,
// each with its pages, a realistic spread of browsers, referrers,
// campaigns and places, and a pool of returning visitors.
var storageCorpus = struct {
	uas, refs, places []string
}{
	uas: []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
		"Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
	},
	refs: []string{"", "", "", "", "https://www.google.com/", "https://www.google.com/", "https://www.google.de/", "https://www.bing.com/",
		"https://duckduckgo.com/", "https://t.co/abc", "https://www.facebook.com/", "https://news.ycombinator.com/", "https://www.reddit.com/r/golang/",
		"https://www.linkedin.com/", "https://chatgpt.com/", "https://blog.example.org/post/12"},
	// country, region, city, ASN
	places: []string{"US CA San Francisco 7922", "US NY New York 701", "DE HE Frankfurt am Main 3320", "DE BE Berlin 3209", "GB ENG London 2856",
		"FR IDF Paris 3215", "NL NH Amsterdam 1136", "IN MH Mumbai 55836", "BR SP São Paulo 28573", "JP 13 Tokyo 2516", "CA ON Toronto 812", "AU NSW Sydney 1221"},
}

// daySalts returns the salts an edge holds at now: today's and
// yesterday's, as edgepixel-salt keeps them, so every full-tier event gets
// a visitor id, as in production.
func daySalts(now time.Time) *privacy.Salts {
	var s privacy.Salts
	for _, d := range []int32{privacy.Day(now), privacy.Day(now) - 1} {
		s[d&1] = privacy.NewSalt(d, [16]byte{byte(d), byte(d >> 8), 7})
	}
	return &s
}

// storageHits builds n events of generated hits through the edge's own
// enrichment (pixel.FromQuery), as a month of a few sites' traffic.
func storageHits(n int, start time.Time, rng *rand.Rand) []event.Event {
	c := &pixel.Config{Salts: daySalts}
	sc := &storageCorpus
	evs := make([]event.Event, 0, n)
	for len(evs) < n {
		site := fmt.Sprintf("site%d.example", min(rng.IntN(40), rng.IntN(40)))
		v := rng.IntN(200_000) // a returning visitor
		page := fmt.Sprintf("https://%s/%s/%d", site, []string{"blog", "docs", "pricing", "products", ""}[v%5], rng.IntN(300))
		q := url.Values{"site": {site}, "ref": {sc.refs[rng.IntN(len(sc.refs))]}}
		switch r := rng.IntN(100); {
		case r < 8:
			page += "?utm_source=newsletter&utm_medium=email&utm_campaign=spring" + strconv.Itoa(rng.IntN(4))
		case r < 12:
			page += "?gclid=" + strconv.Itoa(rng.Int()) + "&utm_source=google&utm_medium=cpc&utm_term=analytics"
		}
		q.Set("url", page)
		if rng.IntN(10) == 0 {
			q.Set("e", []string{"signup", "download", "outbound"}[rng.IntN(3)])
		}
		if rng.IntN(3) == 0 { // sent by s.js
			q.Set("sw", []string{"390", "1440", "1920", "1280", "414", "768"}[rng.IntN(6)])
			q.Set("t", "") // filled below
		}
		place := strings.Fields(sc.places[v%len(sc.places)])
		asn, _ := strconv.Atoi(place[len(place)-1])
		now := start.Add(time.Duration(len(evs)) * (30 * 24 * time.Hour / time.Duration(n)))
		if q.Has("t") {
			q.Set("t", strconv.FormatInt(now.UnixMilli()-int64(rng.IntN(2000)), 10))
		}
		m := &pixel.Meta{Now: now, ClientIP: fmt.Sprintf("198.51.%d.%d", v>>8&0xff, v&0xff), UserAgent: sc.uas[v%len(sc.uas)],
			Pop: []string{"FRA", "AMS", "IAD", "SJC"}[v%4], Rand: crand.Reader,
			Country: place[0], Region: place[1], City: strings.Join(place[2:len(place)-1], " "), ASN: uint32(asn)}
		if rng.IntN(20) == 0 {
			m.SecGPC = "1"
		}
		e, drop := pixel.FromQuery(q.Encode(), m, c)
		if drop != "" {
			continue
		}
		e.Method = "GET"
		evs = append(evs, e)
	}
	return evs
}

// storageServer is one private ClickHouse of the storage section, with
// parts compressed by method.
type storageServer struct {
	method string
	ch     *localsrv.ClickHouse
	c      *clickhouse.Client
	merge  time.Duration // the final merge of this version's events table
}

// storageLayouts are the tables the section compares, per server: the
// schema as this version makes it, as the version before the LowCardinality
// step left it, as the version before the storage step left it, and the 15
// columns of version 1.
var storageLayouts = []struct{ db, table, label string }{
	{"bench", "events", fmt.Sprintf("schema version %d (this one), all %d columns", event.VersionLowCardinality, len(event.Fields)+1)},
	{"bench_v7", "events", fmt.Sprintf("schema version %d's layout", event.VersionLowCardinality-1)},
	{"bench_v5", "events", fmt.Sprintf("schema version %d's layout (path stored)", event.VersionStorage-1)},
	{"bench", "events_v1", "the 15 columns of schema version 1"},
}

// runStorage stores n generated events with every column on two servers,
// one compressing parts with zstd (as the servers this project starts do)
// and one with ClickHouse's default lz4, and on each the same events in
// the layouts of earlier schema versions; merges each table to its final
// parts, and prints bytes on disk per event from system.parts.
func runStorage(n int) error {
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		return fmt.Errorf("clickhouse-server not installed")
	}
	dir, err := os.MkdirTemp("", "edgepixel-bench-storage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	var servers []*storageServer
	defer func() {
		// Wait for each to exit before dir goes: a server still
		// writing leaves its files behind.
		for _, s := range servers {
			s.ch.Kill()
			<-s.ch.Done()
		}
	}()
	for _, method := range []string{localsrv.Compression, "lz4"} {
		ch, err := localsrv.StartClickHouseCompressed(ctx, filepath.Join(dir, method), 0, 0, method)
		if err != nil {
			return err
		}
		s := &storageServer{method: method, ch: ch}
		servers = append(servers, s)
		if s.c, err = clickhouse.New(ch.HTTPURL, "bench"); err != nil {
			return err
		}
		if _, err := s.c.Migrate(ctx); err != nil {
			return err
		}
	}
	var seed [32]byte
	crand.Read(seed[:])
	rng := rand.New(rand.NewChaCha8(seed))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	fmt.Fprintf(os.Stderr, "bench: storage: generating and storing %d events on %d servers ...\n", n, len(servers))
	const chunk = 100_000
	for done := 0; done < n; done += chunk {
		evs := storageHits(min(chunk, n-done), start.Add(time.Duration(done)*time.Minute), rng)
		for _, s := range servers {
			if err := s.c.InsertEvents(ctx, evs); err != nil {
				return err
			}
		}
	}
	all := "ts"
	for _, f := range event.Fields {
		if f.CHAlias == "" && !f.Transit {
			all += ", " + f.JSON
		}
	}
	for _, s := range servers {
		c := s.c
		// The old table: step 1's DDL under another name.
		old := strings.Replace(clickhouse.Migrations[0].SQL(clickhouse.Layout{})[1], "{db}.events (", "bench.events_v1 (", 1)
		if err := c.Exec(ctx, old); err != nil {
			return err
		}
		if err := c.Exec(ctx, "INSERT INTO bench.events_v1 SELECT "+v1Columns+" FROM bench.events"); err != nil {
			return err
		}
		// The tables as earlier versions left them, in databases of their
		// own.
		for _, v := range []struct {
			db      string
			version int
		}{{"bench_v7", event.VersionLowCardinality - 1}, {"bench_v5", event.VersionStorage - 1}} {
			before, err := clickhouse.New(s.ch.HTTPURL, v.db)
			if err != nil {
				return err
			}
			if _, err := before.MigrateTo(ctx, v.version); err != nil {
				return err
			}
			cols := all
			if v.version < event.VersionStorage {
				cols += ", path"
			}
			if err := c.Exec(ctx, "INSERT INTO "+v.db+".events ("+cols+") SELECT "+cols+" FROM bench.events"); err != nil {
				return err
			}
		}
		for i, l := range storageLayouts {
			t0 := time.Now()
			if err := c.Exec(ctx, "OPTIMIZE TABLE "+l.db+"."+l.table+" FINAL"); err != nil {
				return err
			}
			if i == 0 {
				s.merge = time.Since(t0)
			}
		}
	}
	size := func(c *clickhouse.Client, db, table string) (float64, error) {
		rows, err := c.Query(ctx, "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = '"+db+"' AND table = '"+table+"'")
		if err != nil || len(rows) != 1 {
			return 0, fmt.Errorf("system.parts: %v %v", rows, err)
		}
		b, _ := strconv.ParseFloat(rows[0][0], 64)
		r, _ := strconv.ParseFloat(rows[0][1], 64)
		if r != float64(n) {
			return 0, fmt.Errorf("%s.%s holds %.0f rows, not %d", db, table, r, n)
		}
		return b / r, nil
	}
	per := make([][]float64, len(storageLayouts)) // [layout][server]
	for i, l := range storageLayouts {
		for _, s := range servers {
			b, err := size(s.c, l.db, l.table)
			if err != nil {
				return err
			}
			per[i] = append(per[i], b)
		}
	}
	fmt.Printf("\nstorage: %d generated hits through the edge's enrichment, one table each, merged (OPTIMIZE FINAL); ClickHouse 18.16, parts compressed with %s (as the servers this project starts) and with lz4 (the default)\n\n", n, servers[0].method)
	fmt.Printf("%-52s %10s %10s %10s\n", "bytes/event on disk", servers[0].method, servers[1].method, "goal")
	for i, l := range storageLayouts {
		fmt.Printf("%-52s %10.1f %10.1f %10d\n", l.label, per[i][0], per[i][1], goalBytesPerEvent)
	}
	fmt.Printf("\nratio to the goal (%s, this version): %.2f; to schema version %d's layout with lz4: %.2f\n",
		servers[0].method, per[0][0]/goalBytesPerEvent, event.VersionLowCardinality-1, per[0][0]/per[1][1])
	fmt.Printf("final merge of this version's events table (OPTIMIZE FINAL, wall time): %s %.1fs, %s %.1fs\n",
		servers[0].method, servers[0].merge.Seconds(), servers[1].method, servers[1].merge.Seconds())
	for _, s := range servers {
		cols, err := s.c.Query(ctx, "SELECT name, sum(data_compressed_bytes) AS b FROM system.columns WHERE database = 'bench' AND table = 'events' GROUP BY name ORDER BY b DESC LIMIT 10")
		if err != nil {
			return err
		}
		fmt.Printf("largest columns, %s (compressed bytes/event):", s.method)
		for _, r := range cols {
			b, _ := strconv.ParseFloat(r[1], 64)
			fmt.Printf(" %s %.1f", r[0], b/float64(n))
		}
		fmt.Println()
	}
	return nil
}
