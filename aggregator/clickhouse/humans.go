package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// The site's numbers without bots, from rollups of their own:
//
// A question that leaves bots out (the dashboard's bots=exclude) could
// read only the per-minute rollups, which keep each row's verdict (column
// bot) but hold about a row per event: a month's tiles merged ten
// million rows, and the month's visits were computed per visitor from
// them, seconds where the question with bots read a few hundred rows.
// Step VersionHumans keeps the hourly and daily rollups of the events
// that are not a bot's (HumanHoursTable, HumanDaysTable: views from one
// cut-off and a backfill, as step 7's), and VisitDimsTable holds the
// visits of those events as the rows of pseudo-dimension BotDim, value
// "0", which the lease holder's build adds to every hour (a build made
// before has no such rows and gains them, see BuildVisitDims). The verdict is the edge's (BotCond), fixed at ingest as
// in the per-minute rollups; reclassifying bots later means rebuilding
// these rollups from the events.

// HumanHoursTable and HumanDaysTable are the hourly and daily per-site
// rollups of the events that are not a bot's (rollup_hours' and
// rollup_days' columns).
const (
	HumanHoursTable = "rollup_human_hours"
	HumanDaysTable  = "rollup_human_days"
)

// VersionHumans is the schema step that creates HumanHoursTable and
// HumanDaysTable and their views.
const VersionHumans = 16

// BotDim is the pseudo-dimension of VisitDimsTable whose value is "1" for
// a bot's events and "0" for the others (BotCond). It is not in
// Dimensions: the page neither shows nor filters by it, but leaves bots
// out with bots=exclude.
const BotDim = "bot"

// botExpr is BotDim's value for a row of the events table.
func botExpr() string { return "toString(toUInt8(" + BotCond + "))" }

// humanHours and humanDays are HumanHoursTable's and HumanDaysTable's
// rollups: step 7's hourly and daily ones, of the events BotCond does
// not select.
func humanHours() rollup { return humanOf(Grains[1], HumanHoursTable) }
func humanDays() rollup  { return humanOf(Grains[2], HumanDaysTable) }

func humanOf(g Grain, table string) rollup {
	r := rollups()[slices.IndexFunc(Grains, func(x Grain) bool { return x == g })]
	r.table, r.where = table, "NOT ("+BotCond+")"
	return r
}

// HumanTable returns the rollup without bots of grain g (an hour or a
// day), and whether there is one.
func HumanTable(g Grain) (string, bool) { return pairTable(g, HumanHoursTable, HumanDaysTable) }

// pairTable returns, of a pair of rollups by UTC hour and by UTC day, the
// one of grain g, and whether there is one.
func pairTable(g Grain, hours, days string) (string, bool) {
	switch g.Seconds {
	case Grains[1].Seconds:
		return hours, true
	case Grains[2].Seconds:
		return days, true
	}
	return "", false
}

// humansSchema is step VersionHumans' tables (their views are made by
// createHumansViews, which needs the cut-off).
func humansSchema(l Layout) []string { return append(humanHours().create(l), humanDays().create(l)...) }

// createHumansViews is step VersionHumans' work after its tables: the
// views, HumanHoursTable's from a cut-off as createMinuteDimsView makes
// it, HumanDaysTable's from the same one, so that one backfill covers
// both.
func (c *Client) createHumansViews(ctx context.Context) error {
	return c.createPairViews(ctx, humanHours(), humanDays())
}

// createPairViews makes the views of two rollups of the events with one
// cut-off: first's as createHourCutoffView makes it, then second's from
// the cut-off first's view has, so that one backfill covers both.
func (c *Client) createPairViews(ctx context.Context, first, second rollup) error {
	if err := c.createHourCutoffView(ctx, first, "SELECT count() FROM "+c.db+".events"); err != nil {
		return err
	}
	cutoff, ok, err := c.cutoffOf(ctx, first)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("clickhouse: no view of %s after creating it", first.table)
	}
	return c.execDDL(ctx, second.view(c.layout, cutoff.Unix()))
}

// HumanHoursCutoff returns the cut-off of HumanHoursTable's view (and
// HumanDaysTable's): the events before it are rolled up by
// BackfillHumans. ok is false before step VersionHumans.
func (c *Client) HumanHoursCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, humanHours())
}

// BackfillHumans rolls up the events before the cut-off of
// HumanHoursTable's view (HumanDaysTable's is the same) into both tables
// (src = 1 partitions), rebuilding each month that holds fewer of them
// than the events table, as BackfillRollups does (and with its
// guarantees). It is idempotent.
func (c *Client) BackfillHumans(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.HumanHoursCutoff, []rollup{humanHours(), humanDays()})
}

// HumansReady reports whether HumanHoursTable and HumanDaysTable hold
// site's events of [from, to), as MinuteAudienceReady says for its
// table, by month (their partitions). The months it expects are those
// the hourly rollup has events of: one of bots' events alone before the
// cut-off, which the backfill has nothing to roll up of, keeps a range
// over it from being ready, and its questions read the per-minute
// rollups.
func HumansReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return backfilled(ctx, q, db, "toYYYYMM", site, from, to, HumanHoursTable, HumanDaysTable)
}
