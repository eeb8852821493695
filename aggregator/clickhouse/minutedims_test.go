package clickhouse

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// An install with history migrates to each per-minute rollup
// (MinuteAudienceTable, MinuteSourcesTable), to HumanHoursTable, to
// BotDimHoursTable, to MixHoursTable and to OpensHoursTable (an upgrade
// from the step before each): its view rolls up the events
// from its cut-off (a whole hour ahead), the backfill those before it,
// so that per minute, visitor and values it holds what the events table
// says, including events stored between the step and its cut-off;
// readers take it for the history only once backfilled; a second run
// changes nothing.
func TestBackfillMinuteRollups(t *testing.T) {
	for _, tc := range []struct {
		table    string
		version  int
		cutoff   func(*Client, context.Context) (time.Time, bool, error)
		backfill func(*Client, context.Context) (BackfillResult, error)
		ready    func(context.Context, Querier, string, string, time.Time, time.Time) (bool, error)
		// cols are the table's columns compared, raw the same of the
		// events table.
		cols, raw string
		// got and want, if set, are the queries compared instead,
		// of the table and of the events table.
		got, want string
		// monthly: its partitions are months, so a late event is
		// missing (and the range ready) until the month is rebuilt.
		monthly bool
	}{
		{MinuteAudienceTable, VersionMinutes, (*Client).MinuteAudienceCutoff, (*Client).BackfillMinuteAudience, MinuteAudienceReady,
			"country, device, referrer, page, event", "country, toString(device), domain(referrer), path(url), name", "", "", false},
		{MinuteSourcesTable, VersionMinutes, (*Client).MinuteSourcesCutoff, (*Client).BackfillMinuteSources, MinuteSourcesReady,
			"referrer, utm_source, country, device, page, event", "domain(referrer), utm_source, country, toString(device), path(url), name", "", "", false},
		// Per hour and per day, of the events that are not a bot's.
		{HumanHoursTable, VersionHumans, (*Client).HumanHoursCutoff, (*Client).BackfillHumans, HumansReady, "", "",
			"SELECT toUnixTimestamp(t) AS h, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM {db}." + HumanHoursTable + " GROUP BY h ORDER BY h",
			"SELECT toUnixTimestamp(toStartOfHour(ts, 'UTC')) AS h, count(), countIf(name = 'pageview'), uniqCombinedIf(visitor_id, visitor_id != 0) FROM {db}.events WHERE NOT (" + BotCond + ") GROUP BY h ORDER BY h", true},
		{HumanDaysTable, VersionHumans, (*Client).HumanHoursCutoff, (*Client).BackfillHumans, HumansReady, "", "",
			"SELECT toUnixTimestamp(t) AS d, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM {db}." + HumanDaysTable + " GROUP BY d ORDER BY d",
			"SELECT toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS d, count(), countIf(name = 'pageview'), uniqCombinedIf(visitor_id, visitor_id != 0) FROM {db}.events WHERE NOT (" + BotCond + ") GROUP BY d ORDER BY d", true},
		// Per hour and per day, dimension, value and bot verdict.
		{BotDimHoursTable, VersionBotDims, (*Client).BotDimsCutoff, (*Client).BackfillBotDims, botDimsReady, "", "",
			botDimsGot(BotDimHoursTable), botDimsWant("toStartOfHour"), true},
		{BotDimDaysTable, VersionBotDims, (*Client).BotDimsCutoff, (*Client).BackfillBotDims, botDimsReady, "", "",
			botDimsGot(BotDimDaysTable), botDimsWant("toStartOfDay"), true},
		// Per hour, consent tier and bot verdict.
		{MixHoursTable, VersionMix, (*Client).MixCutoff, (*Client).BackfillMix, MixReady, "", "",
			"SELECT toUnixTimestamp(t) AS h, tier, bot, sumMerge(events) FROM {db}." + MixHoursTable + " GROUP BY h, tier, bot ORDER BY h, tier, bot",
			"SELECT toUnixTimestamp(toStartOfHour(ts, 'UTC')) AS h, toString(tier) AS k, toUInt8(" + BotCond + ") AS b, count() FROM {db}.events GROUP BY h, k, b ORDER BY h, k, b", true},
		// Per hour and per day, mail open, signature and bot verdict.
		{OpensHoursTable, VersionOpens, (*Client).OpensCutoff, (*Client).BackfillOpens, OpensReady, "", "",
			opensGot(OpensHoursTable), opensWant("toStartOfHour"), true},
		{OpensDaysTable, VersionOpens, (*Client).OpensCutoff, (*Client).BackfillOpens, OpensReady, "", "",
			opensGot(OpensDaysTable), opensWant("toStartOfDay"), true},
		// Per day, page, value of another dimension and bot verdict.
		{PageDimsTable, VersionPageDims, (*Client).PageDimsCutoff, (*Client).BackfillPageDims, pageDimsReady, "", "",
			pageDimsGot, pageDimsWant, true},
	} {
		t.Run(tc.table, func(t *testing.T) {
			c := newDB(t)
			ctx := context.Background()
			mk := func(n int, at time.Time, step time.Duration) []event.Event { return historyEvents(t, n, at, step) }
			now, history, cutoff := migrateWithHistory(t, c, tc.version, func(ctx context.Context) (time.Time, bool, error) { return tc.cutoff(c, ctx) })
			ready := func(from, to time.Time) bool {
				t.Helper()
				ok, err := tc.ready(ctx, c, c.db, "old.example", from, to)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			if ready(history, now) {
				t.Fatal("ready for the history before the backfill")
			}
			// A table of whole days (PageDimsComplete) holds no part of
			// the cut-off's day before the backfill: it is read over whole
			// days only, checked below.
			if tc.table != PageDimsTable && !ready(cutoff, cutoff.Add(2*time.Hour)) {
				t.Fatal("not ready from the cut-off on")
			}
			// Per minute, visitor and value: events, pageviews, first
			// and last time of the table and of the events table.
			got := "SELECT toUnixTimestamp(t) AS m, visitor_id, " + tc.cols + ", sumMerge(events), sumMerge(pageviews), minMerge(first), maxMerge(last) FROM " + c.db + "." + tc.table +
				" GROUP BY m, visitor_id, " + tc.cols + " ORDER BY m, visitor_id, " + tc.cols
			raw := "SELECT toUnixTimestamp(toStartOfMinute(ts, 'UTC')) AS m, visitor_id, " + tc.raw + ", count(), countIf(name = 'pageview'), min(ts_ms), max(ts_ms) FROM " + c.db + ".events" +
				" GROUP BY m, visitor_id, " + tc.raw + " ORDER BY m, visitor_id, " + tc.raw
			if tc.got != "" {
				got, raw = strings.ReplaceAll(tc.got, "{db}", c.db), strings.ReplaceAll(tc.want, "{db}", c.db)
			}
			check := func(when string) {
				t.Helper()
				if g, w := c.count(t, got), c.count(t, raw); g != w {
					t.Fatalf("%s: %s:\n%s\nevents say:\n%s", when, tc.table, g, w)
				}
			}
			backfill := func(ctx context.Context) (BackfillResult, error) { return tc.backfill(c, ctx) }
			res, err := backfill(ctx)
			if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
				t.Fatalf("%+v %v", res, err)
			}
			check("after the backfill")
			if !ready(history, now) {
				t.Fatal("not ready for the history after the backfill")
			}
			res, err = backfill(ctx)
			if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
				t.Fatalf("second run: %+v %v", res, err)
			}
			check("after a second run")
			// Late, before the cut-off, in a day the history had none
			// of: not ready for that day until its month is rebuilt.
			late := mk(1, history.Add(-36*time.Hour), 0)
			if err := c.InsertEvents(ctx, late); err != nil {
				t.Fatal(err)
			}
			if (!tc.monthly || tc.table == PageDimsTable) && ready(history.Add(-48*time.Hour), now) {
				t.Fatal("ready for a day the backfill has not rolled up")
			}
			// The month, in each table the backfill fills.
			tables := 1
			if tc.version == VersionHumans || tc.version == VersionBotDims || tc.version == VersionOpens {
				tables = 2
			}
			if res, err = backfill(ctx); err != nil || len(res.Rebuilt) != tables {
				t.Fatalf("late event: %+v %v", res, err)
			}
			check("after the late event")
			if !ready(history.Add(-48*time.Hour), now) {
				t.Fatal("not ready after the late event's month was rebuilt")
			}
		})
	}
}

// On a database without events the cut-off is 0: the views cover every
// event, every range is ready, and there is nothing to backfill. Step
// VersionMinutes dropped MinuteDimsTable's view, step VersionBotDims
// DimTable's and DimDayTable's: nothing writes them.
func TestMinutesFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().AddDate(0, 0, -3)
	ev := mkEvent(t, "new.example", at.UnixMilli())
	ev.MailOpen, ev.Signature = "gmail", "unsigned"
	if err := c.InsertEvents(ctx, []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table    string
		cutoff   func(context.Context) (time.Time, bool, error)
		backfill func(context.Context) (BackfillResult, error)
		ready    func(context.Context, Querier, string, string, time.Time, time.Time) (bool, error)
	}{
		{MinuteAudienceTable, c.MinuteAudienceCutoff, c.BackfillMinuteAudience, MinuteAudienceReady},
		{MinuteSourcesTable, c.MinuteSourcesCutoff, c.BackfillMinuteSources, MinuteSourcesReady},
		{BotDimHoursTable, c.BotDimsCutoff, c.BackfillBotDims, botDimsReady},
		{OpensHoursTable, c.OpensCutoff, c.BackfillOpens, OpensReady},
		{OpensDaysTable, c.OpensCutoff, c.BackfillOpens, OpensReady},
		{PageDimsTable, c.PageDimsCutoff, c.BackfillPageDims, pageDimsReady},
	} {
		cutoff, ok, err := tc.cutoff(ctx)
		if err != nil || !ok || cutoff.Unix() != 0 {
			t.Fatalf("%s: cut-off %v %v %v, want 0", tc.table, cutoff, ok, err)
		}
		where := "country = 'DE' AND utm_campaign = 'c'"
		switch tc.table {
		case BotDimHoursTable:
			where = "dim = 'country' AND value = 'DE'"
		case OpensHoursTable, OpensDaysTable:
			where = "mail_open = 'gmail' AND signature = 'unsigned' AND bot = 0"
		case PageDimsTable:
			where = "dim = 'mail_open' AND dim_value = 'gmail' AND bot = 0"
		}
		if got := c.count(t, "SELECT sumMerge(events) FROM "+c.db+"."+tc.table+" WHERE site = 'new.example' AND "+where); got != "1" {
			t.Fatalf("%s holds %s events, want 1", tc.table, got)
		}
		if ok, err := tc.ready(ctx, c, c.db, "new.example", at.Add(-time.Hour), time.Now()); err != nil || !ok {
			t.Fatalf("%s: ready %v %v", tc.table, ok, err)
		}
		if res, err := tc.backfill(ctx); err != nil || res.Checked != 0 {
			t.Fatalf("%s: %+v %v", tc.table, res, err)
		}
	}
	for _, table := range []string{MinuteDimsTable, DimTable, DimDayTable} {
		if got := c.count(t, "SELECT count() FROM "+c.db+"."+table); got != "0" {
			t.Fatalf("%s holds %s rows; its view was dropped", table, got)
		}
		if got := c.count(t, "SELECT count() FROM system.tables WHERE database = "+quote(c.db)+" AND name = "+quote(table+"_mv")); got != "0" {
			t.Fatal("a later step left the view of", table)
		}
	}
}

// botDimsReady reports whether DimRollupsFor reads BotDimRollups.
func botDimsReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	bot, err := BotDimsExist(ctx, q, db)
	if err != nil {
		return false, err
	}
	d, ok, err := DimRollupsFor(ctx, q, db, site, from, to, true, bot)
	return ok && d == BotDimRollups, err
}

// botDimsGot and botDimsWant are the rows of the per-dimension rollup
// with the bot verdict (of two of its dimensions) and the same counted
// from the events, bucketed by start.
func botDimsGot(table string) string {
	return "SELECT toUnixTimestamp(t) AS b, dim, value, bot, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM {db}." + table +
		" WHERE dim IN ('page', 'referrer') GROUP BY b, dim, value, bot ORDER BY b, dim, value, bot"
}

func botDimsWant(start string) string {
	return "SELECT b, dim, value, bot, count(), countIf(name = 'pageview'), uniqCombinedIf(visitor_id, visitor_id != 0) FROM (SELECT toUnixTimestamp(" + start +
		"(ts, 'UTC')) AS b, dv.1 AS dim, dv.2 AS value, toUInt8(" + BotCond + ") AS bot, name, visitor_id FROM {db}.events ARRAY JOIN [('page', path(url)), ('referrer', domain(referrer))] AS dv)" +
		" GROUP BY b, dim, value, bot ORDER BY b, dim, value, bot"
}

// pageDimsGot and pageDimsWant are PageDimsTable's rows of three of its
// dimensions (one of them of OpenDims) and the same counted from the
// events.
var (
	pageDimsGot = "SELECT toUnixTimestamp(t) AS b, dim, dim_value, bot, page, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM {db}." + PageDimsTable +
		" WHERE dim IN ('referrer', 'country', 'signature') GROUP BY b, dim, dim_value, bot, page ORDER BY b, dim, dim_value, bot, page"
	pageDimsWant = "SELECT b, dim, value, bot, page, count(), countIf(name = 'pageview'), uniqCombinedIf(visitor_id, visitor_id != 0) FROM (SELECT toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS b," +
		" dv.1 AS dim, dv.2 AS value, toUInt8(" + BotCond + ") AS bot, path(url) AS page, name, visitor_id FROM {db}.events" +
		" ARRAY JOIN [('referrer', domain(referrer)), ('country', CAST(country AS String)), ('signature', toString(signature))] AS dv)" +
		" GROUP BY b, dim, value, bot, page ORDER BY b, dim, value, bot, page"
)

// pageDimsReady is PageDimsComplete over the whole UTC days that
// [from, to) touches, as the dashboard reads the table: a range of no
// whole day would hold nothing to compare.
func pageDimsReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	day := 24 * time.Hour
	return PageDimsComplete(ctx, q, db, site, from.UTC().Truncate(day), to.UTC().Add(day-1).Truncate(day))
}

// opensGot and opensWant are the rows of a rollup of OpenDims and the
// same counted from the events, bucketed by start.
func opensGot(table string) string {
	return "SELECT toUnixTimestamp(t) AS b, mail_open, signature, bot, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM {db}." + table +
		" GROUP BY b, mail_open, signature, bot ORDER BY b, mail_open, signature, bot"
}

func opensWant(start string) string {
	return "SELECT toUnixTimestamp(" + start + "(ts, 'UTC')) AS b, toString(mail_open) AS o, toString(signature) AS s, toUInt8(" + BotCond + ") AS k, count(), countIf(name = 'pageview'), uniqCombinedIf(visitor_id, visitor_id != 0) FROM {db}.events" +
		" GROUP BY b, o, s, k ORDER BY b, o, s, k"
}
