package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// An install with history migrates to PropsTable, and then to
// PropsDimsTable: each view rolls up the events from its cut-off, the
// backfill those before it, so that the table holds what the events
// table says (PropsTable per day, event name and member; PropsDimsTable
// per day, (dimension, value), event name and member, computed there
// one dimension at a time, its events rolled up counted by the rows of
// dim "" only); readers take it for a range only once it counts every
// event there (PropsComplete, PropsDimsComplete); a second run changes
// nothing.
func TestBackfillProps(t *testing.T) {
	day := "toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS h"
	dims := []string{"SELECT " + day + ", '' AS d, '' AS dv, name AS e, '' AS k, '' AS v, count() AS n, countIf(name = 'pageview') AS p, toUInt64(0) AS u FROM %[1]s.events GROUP BY h, e"}
	for _, d := range PropsDims {
		dims = append(dims, "SELECT "+day+", "+quote(d.Name)+" AS d, CAST("+d.Expr+" AS String) AS dv, name AS e, m.1 AS k, m.2 AS v, count() AS n, countIf(name = 'pageview') AS p, uniqCombinedIf(visitor_id, visitor_id != 0) AS u FROM %[1]s.events ARRAY JOIN "+
			PropPairs()+" AS m WHERE m.1 != '' GROUP BY h, d, dv, e, k, v")
	}
	for _, tc := range []struct {
		table    string
		version  int
		cutoff   func(*Client, context.Context) (time.Time, bool, error)
		backfill func(*Client, context.Context) (BackfillResult, error)
		complete func(context.Context, Querier, string, string, time.Time, time.Time) (bool, error)
		got      string // the table's rows, grouped
		want     string // the same of the events table
		members  []string
	}{{
		PropsTable, VersionProps, (*Client).PropsCutoff, (*Client).BackfillProps, PropsComplete,
		"SELECT toUnixTimestamp(t), event, key, value, sumMerge(events), sumMerge(pageviews) FROM %s.%s GROUP BY t, event, key, value ORDER BY t, event, key, value",
		"SELECT " + day + ", name, m.1 AS k, m.2 AS v, count(), countIf(name = 'pageview') FROM %[1]s.events ARRAY JOIN " + PropPairs() + " AS m GROUP BY h, name, k, v ORDER BY h, name, k, v",
		[]string{"key = 'plan'"},
	}, {
		PropsDimsTable, VersionPropsDims, (*Client).PropsDimsCutoff, (*Client).BackfillPropsDims, PropsDimsComplete,
		"SELECT toUnixTimestamp(t), dim, dim_value, event, key, value, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM %s.%s GROUP BY t, dim, dim_value, event, key, value ORDER BY t, dim, dim_value, event, key, value",
		"SELECT * FROM (" + strings.Join(dims, " UNION ALL ") + ") ORDER BY h, d, dv, e, k, v",
		[]string{"key = 'plan' AND dim = 'country' AND dim_value != ''", "key = 'plan' AND dim = 'device'", "key = 'plan' AND dim = 'page'"},
	}} {
		t.Run(tc.table, func(t *testing.T) {
			c := newDB(t)
			ctx := context.Background()
			now, history, cutoff := migrateWithHistory(t, c, tc.version, func(ctx context.Context) (time.Time, bool, error) { return tc.cutoff(c, ctx) })
			// Over whole days, to the day after now's: the history
			// has events after the cut-off, ahead of now, and a range
			// ending before them on their day is not answered by the
			// day rows (propsComplete).
			complete := func(from, to time.Time) bool {
				t.Helper()
				ok, err := tc.complete(ctx, c, c.db, "site = 'old.example'", from.Truncate(24*time.Hour), to.Truncate(24*time.Hour).Add(48*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			if complete(history, now) {
				t.Fatal("complete for the history before the backfill")
			}
			check := func(when string) {
				t.Helper()
				g, w := c.count(t, fmt.Sprintf(tc.got, c.db, tc.table)), c.count(t, fmt.Sprintf(tc.want, c.db))
				if g != w {
					t.Fatalf("%s: %s:\n%s\nevents say:\n%s", when, tc.table, g, w)
				}
				for _, m := range tc.members {
					if n := c.count(t, "SELECT count() FROM "+c.db+"."+tc.table+" WHERE "+m); n == "0" {
						t.Fatalf("%s: no member rolled up where %s", when, m)
					}
				}
			}
			res, err := tc.backfill(c, ctx)
			if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
				t.Fatalf("%+v %v", res, err)
			}
			check("after the backfill")
			if !complete(history, now) {
				t.Fatal("not complete for the history after the backfill")
			}
			res, err = tc.backfill(c, ctx)
			if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
				t.Fatalf("second run: %+v %v", res, err)
			}
			check("after a second run")
		})
	}
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
