package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// An install with history migrates to PropsTable: its view rolls up the
// events from its cut-off, the backfill those before it, so that per
// day, event name and member it holds what the events table says;
// readers take it for a range only once it counts every event there
// (PropsComplete); a second run changes nothing.
func TestBackfillProps(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	now, history, cutoff := migrateWithHistory(t, c, VersionProps, c.PropsCutoff)
	site := "site = 'old.example'"
	complete := func(from, to time.Time) bool {
		t.Helper()
		ok, err := PropsComplete(ctx, c, c.db, site, from.Truncate(24*time.Hour), to.Truncate(time.Hour).Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if complete(history, now) {
		t.Fatal("complete for the history before the backfill")
	}
	got := "SELECT toUnixTimestamp(t), event, key, value, sumMerge(events), sumMerge(pageviews) FROM %s.%s GROUP BY t, event, key, value ORDER BY t, event, key, value"
	raw := "SELECT toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS h, name, m.1 AS k, m.2 AS v, count(), countIf(name = 'pageview') FROM %s.events ARRAY JOIN " + PropPairs() + " AS m GROUP BY h, name, k, v ORDER BY h, name, k, v"
	check := func(when string) {
		t.Helper()
		g, w := c.count(t, fmt.Sprintf(got, c.db, PropsTable)), c.count(t, fmt.Sprintf(raw, c.db))
		if g != w {
			t.Fatalf("%s: %s:\n%s\nevents say:\n%s", when, PropsTable, g, w)
		}
		if n := c.count(t, "SELECT count() FROM "+c.db+"."+PropsTable+" WHERE key = 'plan'"); n == "0" {
			t.Fatalf("%s: no member rolled up", when)
		}
	}
	res, err := c.BackfillProps(ctx)
	if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v %v", res, err)
	}
	check("after the backfill")
	if !complete(history, now) {
		t.Fatal("not complete for the history after the backfill")
	}
	res, err = c.BackfillProps(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	check("after a second run")
}

// PropPairs reads the members the canonical props hold: scalars, nested
// objects' members under their own keys, escapes undone; not arrays'
// elements, a member inside a string, or a key "".
func TestPropPairs(t *testing.T) {
	c := newDB(t)
	for props, want := range map[string]string{
		``:                                       `=`,
		`{}`:                                     `=`,
		`{"plan":"pro","n":-1.5e3}`:              `=|plan=pro|n=-1.5e3`,
		`{"t":true,"f":false,"z":null}`:          `=|t=true|f=false|z=null`,
		`{"o":{"a":"x,","b":[1,{"c":2}]},"d":3}`: `=|a=x,|c=2|d=3`,
		`{"q":"a\"b\\","s":"{\"k\":1}","":1}`:    `=|q=a"b\|s={"k":1}`,
		`{"k\"ey":"v","é":"ü"}`:                  `=|k"ey=v|é=ü`,
	} {
		if got := c.count(t, "SELECT arrayStringConcat(arrayMap(m -> concat(m.1, '=', m.2), "+PropPairs()+"), '|') FROM (SELECT "+quote(props)+" AS props)"); got != want {
			t.Errorf("%s: %s, want %s", props, got, want)
		}
	}
}

// PropsDimsTable, as TestBackfillProps checks PropsTable: per day,
// (dimension, value), event name and member it holds what the events
// table says, computed there one dimension at a time, with the events
// rolled up counted by the rows of dim "" only.
func TestBackfillPropsDims(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	now, history, cutoff := migrateWithHistory(t, c, VersionPropsDims, c.PropsDimsCutoff)
	site := "site = 'old.example'"
	complete := func(from, to time.Time) bool {
		t.Helper()
		ok, err := PropsDimsComplete(ctx, c, c.db, site, from.Truncate(24*time.Hour), to.Truncate(time.Hour).Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if complete(history, now) {
		t.Fatal("complete for the history before the backfill")
	}
	got := "SELECT toUnixTimestamp(t), dim, dim_value, event, key, value, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM %s.%s GROUP BY t, dim, dim_value, event, key, value ORDER BY t, dim, dim_value, event, key, value"
	day := "toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS h"
	raw := []string{"SELECT " + day + ", '' AS d, '' AS dv, name AS e, '' AS k, '' AS v, count() AS n, countIf(name = 'pageview') AS p, toUInt64(0) AS u FROM %[1]s.events GROUP BY h, e"}
	for _, d := range PropsDims {
		raw = append(raw, "SELECT "+day+", "+quote(d.Name)+" AS d, CAST("+d.Expr+" AS String) AS dv, name AS e, m.1 AS k, m.2 AS v, count() AS n, countIf(name = 'pageview') AS p, uniqCombinedIf(visitor_id, visitor_id != 0) AS u FROM %[1]s.events ARRAY JOIN "+
			PropPairs()+" AS m WHERE m.1 != '' GROUP BY h, d, dv, e, k, v")
	}
	want := "SELECT * FROM (" + strings.Join(raw, " UNION ALL ") + ") ORDER BY h, d, dv, e, k, v"
	check := func(when string) {
		t.Helper()
		g, w := c.count(t, fmt.Sprintf(got, c.db, PropsDimsTable)), c.count(t, fmt.Sprintf(want, c.db))
		if g != w {
			t.Fatalf("%s: %s:\n%s\nevents say:\n%s", when, PropsDimsTable, g, w)
		}
		for _, d := range []string{"country", "device", "page"} {
			if n := c.count(t, "SELECT count() FROM "+c.db+"."+PropsDimsTable+" WHERE dim = "+quote(d)+" AND key = 'plan' AND dim_value != ''"); n == "0" {
				t.Fatalf("%s: no member rolled up under %s", when, d)
			}
		}
	}
	res, err := c.BackfillPropsDims(ctx)
	if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v %v", res, err)
	}
	check("after the backfill")
	if !complete(history, now) {
		t.Fatal("not complete for the history after the backfill")
	}
	res, err = c.BackfillPropsDims(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	check("after a second run")
}
