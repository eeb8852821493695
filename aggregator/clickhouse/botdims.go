package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The per-dimension rollups with the bot verdict:
//
// DimTable and DimDayTable count bots' events with everyone's, so a top
// table that leaves bots out (the dashboard's bots=exclude) could only
// read the per-minute rollups, about a row per event: a month's top pages
// took a second. Step VersionBotDims replaces their views by views into
// BotDimHoursTable and BotDimDaysTable, the same rows with the edge's
// verdict (BotCond, fixed at ingest as in the other rollups) in their
// key: a question with bots reads every row, one without reads those of
// bot 0. Replacing rather than adding keeps the number of views each
// insert feeds, which is what a view costs ingest.
//
// The new views roll up the events from a cut-off on (a whole hour, as
// createHourCutoffView makes it); BackfillBotDims rolls up those before
// it from the events table. DimTable and DimDayTable are no longer
// written once the step has run, but keep what they hold: a month whose
// events retention removed before the step is only there. Readers take
// the pair that holds a range (DimRollupsFor).

// BotDimHoursTable and BotDimDaysTable are the per-dimension rollups by
// UTC hour and day with a column bot (DimTable's and DimDayTable's
// columns, and bot after value).
const (
	BotDimHoursTable = "rollup_dims_bot"
	BotDimDaysTable  = "rollup_dim_days_bot"
)

// VersionBotDims is the schema step that creates BotDimHoursTable and
// BotDimDaysTable and their views, and drops DimTable's and DimDayTable's.
const VersionBotDims = 17

// botDimHours and botDimDays are the step's rollups. The day table's key
// puts bot before the day, so that a value's month of one verdict is one
// run of rows (see dimDays for its small granules).
func botDimHours() rollup {
	return withBot(dimRollup(BotDimHoursTable, Grains[1].Start), "site, dim, t, value, bot")
}

func botDimDays() rollup {
	r := withBot(dimRollup(BotDimDaysTable, Grains[2].Start), "site, dim, value, bot, t")
	r.settings = "index_granularity = 64"
	return r
}

// botDimsSchema is step VersionBotDims' tables (their views are made by
// createBotDimsViews, which needs the cut-off).
func botDimsSchema(l Layout) []string {
	return append(botDimHours().create(l), botDimDays().create(l)...)
}

// createBotDimsViews is step VersionBotDims' work after its tables: the
// views, BotDimHoursTable's from a cut-off as createHumansViews makes
// HumanHoursTable's, BotDimDaysTable's from the same one; then it drops
// DimTable's and DimDayTable's views, as step VersionMinutes dropped
// MinuteDimsTable's. Run again (see rerunSteps), it drops them again
// after the earlier steps' Run made them.
func (c *Client) createBotDimsViews(ctx context.Context) error {
	if err := c.createPairViews(ctx, botDimHours(), botDimDays()); err != nil {
		return err
	}
	for _, t := range []string{DimTable, DimDayTable} {
		if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+t+"_mv"+c.layout.OnCluster()); err != nil {
			return err
		}
	}
	return nil
}

// BotDimsCutoff returns the cut-off of BotDimHoursTable's view (and
// BotDimDaysTable's): the events before it are rolled up by
// BackfillBotDims. ok is false before step VersionBotDims.
func (c *Client) BotDimsCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, botDimHours())
}

// BackfillBotDims rolls up the events before the cut-off of
// BotDimHoursTable's view into both tables (src = 1 partitions),
// rebuilding each month that holds fewer of them than the events table,
// as BackfillRollups does (and with its guarantees). A month whose events
// DimTable holds more of than the events table (retention or an erasure
// removed some before the backfill) is copied from DimTable's rows
// instead, their verdict unknown (bot BotUnknown), rebuilt when it holds
// a different number of them. It is idempotent.
func (c *Client) BackfillBotDims(ctx context.Context) (BackfillResult, error) {
	return c.backfillRun(ctx, c.BotDimsCutoff, func(cutoff time.Time, run string, res *BackfillResult) error {
		hours, days := botDimHours(), botDimDays()
		kept, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+DimTable+" WHERE "+hours.check+" AND "+dimHoursBefore(cutoff)+" GROUP BY m")
		if err != nil {
			return err
		}
		stored, err := c.monthCounts(ctx, fmt.Sprintf("SELECT toYYYYMM(%s) AS m, count() FROM %s.events WHERE ts < toDateTime(%d) GROUP BY m", hours.tExpr, c.db, cutoff.Unix()))
		if err != nil {
			return err
		}
		// The months DimTable holds more of than the events table.
		old := map[uint64]uint64{}
		for m, n := range kept {
			if n > stored[m] {
				old[m] = n
			}
		}
		for _, r := range []rollup{hours, days} {
			if err := c.backfillFromEventsBut(ctx, r, cutoff, run, res, old); err != nil {
				return err
			}
			if err := c.copyDimHours(ctx, r, fmt.Sprintf(", toUInt8(%d) AS bot", BotUnknown), cutoff, old, run, res, stored); err != nil {
				return err
			}
		}
		return nil
	})
}

// BotUnknown is the bot column's value in rows BackfillBotDims copied from
// DimTable, which counts bots with everyone: a question without bots
// cannot read them (DimRollupsFor).
const BotUnknown = 2

// DimRollups names a pair of per-dimension rollups, by UTC hour and by
// UTC day, with the same columns; Bot says they have BotCond's verdict
// as a column bot.
type DimRollups struct {
	Hours, Days string
	Bot         bool
}

var (
	// BotDimRollups are step VersionBotDims' rollups, written since.
	BotDimRollups = DimRollups{BotDimHoursTable, BotDimDaysTable, true}
	// PlainDimRollups are DimTable and DimDayTable, written before step
	// VersionBotDims.
	PlainDimRollups = DimRollups{DimTable, DimDayTable, false}
)

// BotDimsExist reports whether database db (read by q) has step
// VersionBotDims' views, and so BotDimRollups. No step drops those
// tables (nor, so far, the views): once true, it stays true.
func BotDimsExist(ctx context.Context, q Querier, db string) (bool, error) {
	_, ok, err := viewCutoff(ctx, q, db, BotDimHoursTable)
	return ok, err
}

// DimRollupsFor returns the per-dimension rollups that answer site's
// question over [from, to), whole UTC hours, with bots or without
// (excludeBots): BotDimRollups, if bot (BotDimsExist says db has them),
// where its hours hold at least as many events (dimension event, one row
// per event) as the hourly rollup (Grains[1]) and, without bots, none of
// unknown verdict (BotUnknown); else, with bots, PlainDimRollups where
// its hours hold as many. ok is false when neither does (their backfill
// has not run yet, or a late event changed an hour since). q reads
// database db, in one query.
func DimRollupsFor(ctx context.Context, q Querier, db, site string, from, to time.Time, excludeBots, bot bool) (DimRollups, bool, error) {
	span := fmt.Sprintf("site = %s AND t >= toDateTime(%d) AND t < toDateTime(%d)", quote(site), from.Unix(), to.Unix())
	count := func(agg, table, cond string) string {
		return "(SELECT " + agg + " FROM " + db + "." + table + " WHERE " + span + cond + ")"
	}
	sql := "SELECT " + count("sumMerge(events)", Grains[1].Table, "") + ", " + count("sumMerge(events)", DimTable, " AND dim = 'event'")
	if bot {
		sql += ", " + count("sumMerge(events)", BotDimHoursTable, " AND dim = 'event'") + ", " + count("count()", BotDimHoursTable, fmt.Sprintf(" AND dim = 'event' AND bot = %d", BotUnknown))
	}
	rows, err := q.Query(ctx, sql)
	if err != nil || len(rows) != 1 || len(rows[0]) < 2 {
		return DimRollups{}, false, err
	}
	var n [4]uint64
	for i, v := range rows[0] {
		if i < len(n) {
			n[i], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	// The new pair may be ahead of the hourly rollup while an insert
	// runs their views (in name order), never behind once it holds the
	// range; the old pair, no longer written but by a rerun's brief
	// views (see createBotDimsViews), must match exactly.
	switch {
	case bot && len(rows[0]) == 4 && n[2] >= n[0]:
		return BotDimRollups, !excludeBots || n[3] == 0, nil
	case !excludeBots && n[1] == n[0]:
		return PlainDimRollups, true, nil
	}
	return DimRollups{}, false, nil
}
