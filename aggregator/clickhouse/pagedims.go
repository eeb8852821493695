package clickhouse

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Pages under another dimension's filter, and a dimension under a page's,
// from a rollup of the pairs:
//
// A top table of pages under one filter of another dimension (the pages
// people reached from one referrer, or where one event happens), or of
// another dimension under a page's filter, read a per-minute rollup
// (MinuteSourcesTable, MinuteAudienceTable), about a row per event: the
// filter's share of the month's rows, which for a site's main referrer,
// country or event is most of them (make bench: over 300 ms on a month of
// 10 million events), or, under a filter of OpenDims, which the
// per-minute rollups lack, the events table. Step VersionPageDims keeps,
// per site, UTC day, dimension of PageDims, its value, page and bot
// verdict, the events, pageviews and visitors (PageDimsTable): a row per
// pair that occurred in a day, a few per page and value however many
// events they count. Sorted by the dimension and its value first, a
// filter of either kind reads a month of one dimension's pairs at most.
//
// It is kept as PropsDimsTable is: a view from a cut-off (a whole hour a
// little ahead of the step), the backfill for the events before it,
// month partitions rebuilt where they count fewer events than the events
// table (each event adds one row of dimension event: the check), and
// readers take it for whole UTC days it holds completely
// (PageDimsComplete).

// PageDimsTable is the per-day rollup of the events per page and value of
// each dimension in PageDims.
const PageDimsTable = "rollup_page_dims"

// VersionPageDims is the schema step that creates PageDimsTable and its
// view.
const VersionPageDims = 20

// PageDims are the dimensions PageDimsTable pairs with the page, as
// released (a later dimension needs a step of its own): every dimension a
// filter narrows by but the page itself, and the region and city, whose
// filters are narrow enough for the per-minute rollups (their values
// times the pages would be most of the table's rows).
var PageDims = []string{"referrer", "channel", "utm_source", "utm_medium", "utm_campaign", "country", "browser", "os", "device", "event", "mail_open", "signature"}

// IsPageDim reports whether dimension name is one of PageDims.
func IsPageDim(name string) bool { return slices.Contains(PageDims, name) }

// pageDimsRollup is PageDimsTable's rollup.
func pageDimsRollup() rollup {
	pairs := make([]string, len(PageDims))
	for i, name := range PageDims {
		d, ok := DimensionByName(name)
		if !ok {
			panic("clickhouse: PageDims names an unknown dimension " + name)
		}
		// CAST: every element of the array must have one type, and some
		// expressions are LowCardinality or Enum.
		pairs[i] = "('" + d.Name + "', CAST(" + d.Expr + " AS String))"
	}
	page, _ := DimensionByName("page")
	return rollup{
		table: PageDimsTable,
		cols:  "dim String,\n\t\tdim_value String,\n\t\tbot UInt8,\n\t\tpage String,\n\t\t" + countCols + ",\n\t\t" + visitorsCol,
		part:  "toYYYYMM(t)", order: "site, dim, dim_value, bot, t, page", tExpr: Grains[2].Start + "(ts, 'UTC')",
		sel: "dv.1 AS dim, dv.2 AS dim_value, toUInt8(" + BotCond + ") AS bot, CAST(" + page.Expr + " AS String) AS page, " +
			countAggs + ", " + visitorsAgg,
		arrayJ: "ARRAY JOIN [" + strings.Join(pairs, ", ") + "] AS dv", group: "site, t, dim, dim_value, bot, page", check: "dim = 'event'",
		// A month's pairs with a visitors state each: a day at a time,
		// as PropsDimsTable's backfill.
		daily: true,
		// A filter reads one value's rows of a month, a few hundred to
		// thousands; small granules keep a read to them (see
		// propsDimsRollup).
		settings: "index_granularity = 256",
	}
}

// pageDimsSchema is step VersionPageDims' table (its view is made by
// createPageDimsView, which needs the cut-off).
func pageDimsSchema(l Layout) []string { return pageDimsRollup().create(l) }

// createPageDimsView is step VersionPageDims' work after its table, as
// createPropsDimsView is step VersionPropsDims'.
func (c *Client) createPageDimsView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, pageDimsRollup(), "SELECT count() FROM "+c.db+".events")
}

// PageDimsCutoff returns PageDimsTable's cut-off: the events before it
// are rolled up by BackfillPageDims. ok is false before step
// VersionPageDims.
func (c *Client) PageDimsCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, pageDimsRollup())
}

// BackfillPageDims rolls up the events before PageDimsTable's cut-off
// into it (src = 1 partitions), rebuilding each month that holds fewer of
// them than the events table, as BackfillRollups does (and with its
// guarantees). It is idempotent.
func (c *Client) BackfillPageDims(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.PageDimsCutoff, []rollup{pageDimsRollup()})
}

// PageDimsComplete reports whether PageDimsTable's days answer [from, to)
// for site, as PropsComplete does for PropsTable: false before step
// VersionPageDims, for days the backfill has not rolled up yet, and where
// the last day holds events from to on.
func PageDimsComplete(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	return propsComplete(ctx, q, db, PageDimsTable, "dim = 'event'", "site = "+quote(site), from, to)
}
