package clickhouse

import (
	"context"
	"time"
)

// What a site's events are made of, from a rollup of its own:
//
// The dashboard's quality tile shows the share of bots' events (BotCond)
// and the events per consent tier. No rollup before step VersionMix kept
// the tier, so every load of the page read the tier and bot_score of
// every event of its range from the events table: a month of ten million
// events is ten million rows per look, for a tile of a few numbers. Step
// VersionMix keeps, per site and UTC hour, the events per tier and
// verdict (MixHoursTable: a view from a cut-off and a backfill, as step
// 7's). It holds counts only, no visitor ids: erasure has nothing to
// delete there, and retention keeps it as it keeps rollup_hours.

// MixHoursTable is the hourly per-site rollup of the events per consent
// tier (the events table's tier, as text: "full", "aggregate", "" for an
// edge before the tiers) and bot verdict (bot: 1 where BotCond holds).
const MixHoursTable = "rollup_mix_hours"

// VersionMix is the schema step that creates MixHoursTable and its view.
const VersionMix = 18

// mixHours is MixHoursTable's rollup.
func mixHours() rollup {
	return rollup{
		table: MixHoursTable,
		cols:  "tier String,\n\t\tbot UInt8,\n\t\tevents AggregateFunction(sum, UInt64)",
		part:  "toYYYYMM(t)", order: "site, t, tier, bot",
		tExpr: Grains[1].Start + "(ts, 'UTC')", start: Grains[1].Start,
		// CAST: a function of a LowCardinality column is one too, which
		// a view into a String column refuses.
		sel:   "CAST(tier AS String) AS tier, toUInt8(" + BotCond + ") AS bot, sumState(toUInt64(1)) AS events",
		group: "site, t, tier, bot",
	}
}

// mixSchema is step VersionMix's table (its view is made by
// createMixView, which needs the cut-off).
func mixSchema(l Layout) []string { return mixHours().create(l) }

// createMixView is step VersionMix's work after its table: the view, from
// a cut-off as createMinuteDimsView makes it.
func (c *Client) createMixView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, mixHours(), "SELECT count() FROM "+c.db+".events")
}

// MixCutoff returns the cut-off of MixHoursTable's view: the events
// before it are rolled up by BackfillMix. ok is false before step
// VersionMix.
func (c *Client) MixCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, mixHours())
}

// BackfillMix rolls up the events before MixHoursTable's cut-off into it
// (src = 1 partitions), rebuilding each month that holds fewer events
// than the events table, as BackfillRollups does (and with its
// guarantees). It is idempotent.
func (c *Client) BackfillMix(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.MixCutoff, []rollup{mixHours()})
}

// MixReady reports whether MixHoursTable holds site's events of
// [from, to), by month (its partitions), as HumansReady says for its
// tables.
func MixReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return backfilled(ctx, q, db, "toYYYYMM", site, from, to, MixHoursTable)
}
