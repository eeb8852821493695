package clickhouse

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Any combination of filters, and a top table under any filter, from two
// per-minute rollups of every dimension sorted two ways:
//
// MinuteDimsTable (step VersionMinuteDims) lacked the source dimensions
// (referrer, channel and the UTM parameters, which change within a
// visit: each pageview has its own referrer) and led with the visitor's
// (AudienceDims), so a question with a source's filter, or a source's top
// table under another filter, read every event of the range, and one
// under a page's or an event's filter alone every minute row of it.
// Step VersionMinutes replaces it with two tables that hold its rows with
// every dimension of both kinds, per site, minute and visitor:
// MinuteAudienceTable sorted by AudienceDims first, as MinuteDimsTable
// was, for questions with a filter of the visitor's; MinuteSourcesTable
// sorted by SourceDims, then the event name and the page, for the others.
// A filter of the leading dimensions reads its share of a day's rows; one
// of a later dimension of the lead reads the runs of its value within
// each combination of those before it, few where a site's traffic comes
// from a few sources, as it usually does. Both keep, per row, whether the
// events are a bot's (column bot), so that any question may leave bots
// out. Grouped by visitor and minute,
// the rows of either are those the events table's visits query groups
// its events into, so visits under any filters add up from them exactly
// as from the events.
//
// Each is kept as MinuteDimsTable was: a view from a cut-off (a whole
// hour, a little ahead when the step runs; 0 on a database without
// events) for the events from then on (src 0), the backfill for those
// before it (src 1), rebuilt per month from the events table where its
// count differs, as BackfillRollups does; day partitions that retention
// drops with the events they came from; a visitor id's rows erased with
// it. Readers take one for a range only where it holds the days before
// its cut-off (MinuteAudienceReady, MinuteSourcesReady).

// BotCond is the condition on a row of the events table that it is a
// bot's (event.BotScoreMin). The per-minute rollups keep it per row
// (column bot), so that a question can leave bots out.
var BotCond = "bot_score >= " + strconv.Itoa(event.BotScoreMin)

// MinuteAudienceTable is the per-minute, per-visitor rollup sorted by
// AudienceDims.
const MinuteAudienceTable = "rollup_minute_audience"

// MinuteSourcesTable is the per-minute, per-visitor rollup sorted by
// SourceDims, the event name and the page.
const MinuteSourcesTable = "rollup_minute_sources"

// VersionMinutes is the schema step that creates MinuteAudienceTable and
// MinuteSourcesTable and drops MinuteDimsTable's view.
const VersionMinutes = 14

// AudienceDims are the visitor-level dimensions, constant per visitor id
// (a hash of IP and user agent) but for geography changing within a day,
// most selective last.
var AudienceDims = []string{"country", "device", "browser", "os", "region", "city"}

// SourceDims are where a pageview came from. The channel comes first: it
// has a handful of values and is a function of the UTM parameters and
// the referrer, so those narrow within it.
var SourceDims = []string{"channel", "utm_source", "utm_medium", "utm_campaign", "referrer"}

// contentDims are the event name and the page, after SourceDims in
// MinuteSourcesTable's key and after the time in MinuteAudienceTable's.
var contentDims = []string{"event", "page"}

// HasMinuteDim reports whether the per-minute rollups (both hold the
// same dimensions) hold dimension name.
func HasMinuteDim(name string) bool {
	return slices.Contains(AudienceDims, name) || slices.Contains(SourceDims, name) || slices.Contains(contentDims, name)
}

// minuteAudience is MinuteAudienceTable's rollup.
func minuteAudience() rollup {
	return minuteRollup(MinuteAudienceTable, AudienceDims, slices.Concat(SourceDims, contentDims), true)
}

// minuteSources is MinuteSourcesTable's rollup.
func minuteSources() rollup {
	return minuteRollup(MinuteSourcesTable, slices.Concat(SourceDims, contentDims), AudienceDims, true)
}

// minutesSchema is step VersionMinutes' tables (their views are made by
// createMinutesViews, which needs the cut-off).
func minutesSchema(l Layout) []string {
	return append(minuteAudience().create(l), minuteSources().create(l)...)
}

// createMinutesViews is step VersionMinutes' work after its tables: their
// views, each as createMinuteDimsView made MinuteDimsTable's, then
// MinuteDimsTable's view dropped (each view costs every insert into
// events). Run again (a repair reruns every step, remaking that view
// first), it drops it again.
func (c *Client) createMinutesViews(ctx context.Context) error {
	for _, r := range []rollup{minuteAudience(), minuteSources()} {
		if err := c.createHourCutoffView(ctx, r, "SELECT count() FROM "+c.db+".events"); err != nil {
			return err
		}
	}
	return c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+MinuteDimsTable+"_mv"+c.layout.OnCluster())
}

// MinuteAudienceCutoff returns MinuteAudienceTable's cut-off: the events
// before it are rolled up by BackfillMinuteAudience. ok is false before
// step VersionMinutes.
func (c *Client) MinuteAudienceCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, minuteAudience())
}

// MinuteSourcesCutoff is MinuteAudienceCutoff for MinuteSourcesTable.
func (c *Client) MinuteSourcesCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, minuteSources())
}

// BackfillMinuteAudience rolls up the events before MinuteAudienceTable's
// cut-off into it (src = 1 partitions), rebuilding each month that holds
// fewer events than the events table, as BackfillRollups does (and with
// its guarantees). It is idempotent.
func (c *Client) BackfillMinuteAudience(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.MinuteAudienceCutoff, []rollup{minuteAudience()})
}

// BackfillMinuteSources is BackfillMinuteAudience for MinuteSourcesTable.
func (c *Client) BackfillMinuteSources(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.MinuteSourcesCutoff, []rollup{minuteSources()})
}

// MinuteAudienceReady reports whether MinuteAudienceTable holds site's
// events of [from, to), as MinuteDimsReady says for its table.
func MinuteAudienceReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return minuteReady(ctx, q, db, MinuteAudienceTable, site, from, to)
}

// MinuteSourcesReady is MinuteAudienceReady for MinuteSourcesTable.
func MinuteSourcesReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return minuteReady(ctx, q, db, MinuteSourcesTable, site, from, to)
}
