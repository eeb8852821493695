package clickhouse

import (
	"context"
	"slices"
	"time"
)

// Email opens and signatures, from rollups of their own:
//
// The edge classifies an email or feed open pixel's hit by who fetched
// it (mail_open: a person, or a mail proxy or feed reader that fetches
// every message, read or not) and a signed pixel's by its signature
// (verified, unverified, unsigned under sign=mark). Both were only in the
// events table, so a newsletter's machine opens against person opens
// could be told apart only with SQL (found by a new-user tester). Step
// VersionOpens makes them dimensions (OpenDims) and keeps, per site and
// UTC hour and day, the events, pageviews and visitors per mail_open,
// signature and bot verdict (OpensHoursTable, OpensDaysTable: views from
// one cut-off and a backfill, as step VersionHumans' pair). A top table
// of either, under no filter or filters of these two dimensions only,
// with bots or without, reads a few rows per day from them where a scan
// of the events table read every event of the range; the site's numbers
// under such filters too.
//
// Step VersionBotDims' views (one ARRAY JOIN over the dimensions up to
// VersionRollups) are released and never changed, so the per-dimension
// and per-minute rollups hold neither dimension: a question that combines
// them with another dimension's filter reads the events table.

// OpensHoursTable and OpensDaysTable are the hourly and daily per-site
// rollups of the events per mail_open, signature (the events table's
// values, as text) and bot verdict (bot: 1 where BotCond holds), with
// events, pageviews and visitors as rollup_hours and rollup_days keep
// them.
const (
	OpensHoursTable = "rollup_opens_hours"
	OpensDaysTable  = "rollup_opens_days"
)

// VersionOpens is the schema step that creates OpensHoursTable and
// OpensDaysTable and their views.
const VersionOpens = 19

// OpenDims are the dimensions OpensHoursTable and OpensDaysTable hold,
// named as their columns.
var OpenDims = []string{"mail_open", "signature"}

// IsOpenDim reports whether dimension name is one of OpenDims.
func IsOpenDim(name string) bool { return slices.Contains(OpenDims, name) }

// opensHours and opensDays are OpensHoursTable's and OpensDaysTable's
// rollups.
func opensHours() rollup { return opensOf(Grains[1], OpensHoursTable) }
func opensDays() rollup  { return opensOf(Grains[2], OpensDaysTable) }

// opensOf is the rollup called table of grain g. The CASTs: a function of
// a LowCardinality column is one too, which a view into a String column
// refuses (see mixHours).
func opensOf(g Grain, table string) rollup {
	return rollup{
		table: table,
		cols:  "mail_open String,\n\t\tsignature String,\n\t\tbot UInt8,\n\t\t" + countCols + ",\n\t\t" + visitorsCol,
		part:  "toYYYYMM(t)", order: "site, t, mail_open, signature, bot",
		tExpr: g.Start + "(ts, 'UTC')", start: g.Start,
		sel:   "CAST(mail_open AS String) AS mail_open, CAST(signature AS String) AS signature, toUInt8(" + BotCond + ") AS bot, " + countAggs + ", " + visitorsAgg,
		group: "site, t, mail_open, signature, bot",
	}
}

// OpensTable returns the rollup of OpenDims of grain g (an hour or a
// day), and whether there is one.
func OpensTable(g Grain) (string, bool) { return pairTable(g, OpensHoursTable, OpensDaysTable) }

// opensSchema is step VersionOpens' tables (their views are made by
// createOpensViews, which needs the cut-off).
func opensSchema(l Layout) []string { return append(opensHours().create(l), opensDays().create(l)...) }

// createOpensViews is step VersionOpens' work after its tables: the
// views, OpensHoursTable's from a cut-off as createHumansViews makes
// HumanHoursTable's, OpensDaysTable's from the same one, so that one
// backfill covers both.
func (c *Client) createOpensViews(ctx context.Context) error {
	return c.createPairViews(ctx, opensHours(), opensDays())
}

// OpensCutoff returns the cut-off of OpensHoursTable's view (and
// OpensDaysTable's): the events before it are rolled up by BackfillOpens.
// ok is false before step VersionOpens.
func (c *Client) OpensCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, opensHours())
}

// BackfillOpens rolls up the events before the cut-off of
// OpensHoursTable's view (OpensDaysTable's is the same) into both tables
// (src = 1 partitions), rebuilding each month that holds fewer of them
// than the events table, as BackfillRollups does (and with its
// guarantees). It is idempotent.
func (c *Client) BackfillOpens(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.OpensCutoff, []rollup{opensHours(), opensDays()})
}

// OpensReady reports whether OpensHoursTable and OpensDaysTable hold
// site's events of [from, to), by month (their partitions), as
// HumansReady says for its tables: until then a question reads the
// events table.
func OpensReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return backfilled(ctx, q, db, "toYYYYMM", site, from, to, OpensHoursTable, OpensDaysTable)
}
