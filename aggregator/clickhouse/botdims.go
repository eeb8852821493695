package clickhouse

import (
	"context"
	"fmt"
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
	return withBot(dimRollup(BotDimHoursTable, Grains[1].Start+"(ts, 'UTC')"), "site, dim, t, value, bot")
}

func botDimDays() rollup {
	r := withBot(dimRollup(BotDimDaysTable, Grains[2].Start+"(ts, 'UTC')"), "site, dim, value, bot, t")
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
	if err := c.createHourCutoffView(ctx, botDimHours(), "SELECT count() FROM "+c.db+".events"); err != nil {
		return err
	}
	cutoff, ok, err := c.BotDimsCutoff(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("clickhouse: no view of %s after creating it", BotDimHoursTable)
	}
	if err := c.execDDL(ctx, botDimDays().view(c.layout, cutoff.Unix())); err != nil {
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
// as BackfillRollups does (and with its guarantees). It is idempotent.
func (c *Client) BackfillBotDims(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.BotDimsCutoff, []rollup{botDimHours(), botDimDays()})
}

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

// DimRollupsFor returns the per-dimension rollups that hold site's events
// of [from, to), whole UTC hours: BotDimRollups where its hours hold as
// many events (dimension event, one row per event) as the hourly rollup
// (Grains[1]), else PlainDimRollups where they do; ok is false when
// neither does (their backfill has not run yet, or a late event changed
// an hour since). A month retention removed the events of before step
// VersionBotDims has its only per-dimension rows in PlainDimRollups. q
// reads database db.
func DimRollupsFor(ctx context.Context, q Querier, db, site string, from, to time.Time) (DimRollups, bool, error) {
	_, bot, err := viewCutoff(ctx, q, db, BotDimHoursTable)
	if err != nil {
		return DimRollups{}, false, err
	}
	span := fmt.Sprintf("site = %s AND t >= toDateTime(%d) AND t < toDateTime(%d)", quote(site), from.Unix(), to.Unix())
	count := func(table, cond string) string {
		return "(SELECT sumMerge(events) FROM " + db + "." + table + " WHERE " + span + cond + ")"
	}
	sql := "SELECT " + count(Grains[1].Table, "") + ", " + count(DimTable, " AND dim = 'event'")
	if bot {
		sql += ", " + count(BotDimHoursTable, " AND dim = 'event'")
	}
	rows, err := q.Query(ctx, sql)
	if err != nil || len(rows) != 1 || len(rows[0]) < 2 {
		return DimRollups{}, false, err
	}
	row := rows[0]
	switch {
	case bot && len(row) == 3 && row[2] == row[0]:
		return BotDimRollups, true, nil
	case row[1] == row[0]:
		return PlainDimRollups, true, nil
	}
	return DimRollups{}, false, nil
}
