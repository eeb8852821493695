package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// How a month's visits answer from a few hundred rows:
//
// A visit can span any number of hours (and days, and batches), so visits
// do not add up per hour as counts do. They do once each visitor's visit
// is cut at hour boundaries into pieces that remember whether they join
// the piece before or after them: the visits of a range of whole hours
// are the pieces in it minus the joins between two of its hours, their
// duration the pieces' durations plus the gaps of those joins, and a
// bounce a one-pageview piece joined to nothing in the range. Per site
// and hour, those are sums: VisitHour. A range is cut at its start and
// end like that, exactly as the same question over the events table cuts
// it (visits are counted from the events in the range).
//
// VisitPiecesSQL computes VisitHours from VisitsTable's segments, reading
// the half hour before and after the hours for the joins. The rollups'
// lease holder (RunBackfill) stores those of settled hours in
// VisitHoursTable (BuildVisitHours) with, as Source, the events that the
// hour and its neighbours held in the hourly rollup when it read them; a
// reader uses a stored hour only while the hourly rollup still says so,
// and computes the others (the last hour or two, late events) from the
// segments.

// VisitHoursTable holds the VisitHours of settled hours, per site and
// hour, the latest build of each (ReplacingMergeTree by built; readers
// take argMax by built).
const VisitHoursTable = "visit_hours"

// VisitHour is one hour of one site's visits cut at hour boundaries.
type VisitHour struct {
	T          time.Time // the hour's start, UTC
	Pieces     uint64    // visit pieces in the hour
	Joins      uint64    // pieces that continue one of the hour before
	JoinMS     uint64    // the gaps (ms) from those to their previous piece
	DurationMS uint64    // summed over pieces: last - first event time
	Pageviews  uint64
	// Bounces are the pieces of one event, a pageview, by whether they
	// join the hour before (In) and the hour after (Out).
	Bounce, BounceIn, BounceOut, BounceInOut uint64
}

// visitHourCols are VisitHour's columns after site and t, in order.
var visitHourCols = []string{"pieces", "joins", "join_ms", "duration_ms", "pageviews", "bounce", "bounce_in", "bounce_out", "bounce_in_out"}

func (v *VisitHour) fields() []*uint64 {
	return []*uint64{&v.Pieces, &v.Joins, &v.JoinMS, &v.DurationMS, &v.Pageviews, &v.Bounce, &v.BounceIn, &v.BounceOut, &v.BounceInOut}
}

func visitHoursSchema(l Layout) []string {
	cols := "site String,\n\t\tt DateTime,\n\t\tbuilt UInt64,\n\t\tsource UInt64"
	for _, c := range visitHourCols {
		cols += ",\n\t\t" + c + " UInt64"
	}
	return l.CreateTable(VisitHoursTable, cols, "ReplacingMergeTree(built)", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, t)`)
}

// VisitPiecesSQL returns the query whose rows are site, hour (unix
// seconds), then visitHourCols: the VisitHours of the hours in [from, to)
// of the sites that siteCond (a condition on site) selects, from the
// segments in [from - a segment, end). end is to plus a segment for the
// joins out of the last hour, or to itself where the range ends there.
// from, to and end must be whole segments.
//
// Per visitor, the segments sorted by time are cut where the gap from
// the previous segment's last event is a visit gap or more, or the hour
// changes; a piece joins the one before when only the hour changed. The
// neighbours' times come from the arrays shifted by one (ARRAY JOIN
// zips them), not from indexing inside a lambda, which would copy the
// arrays per element.
func VisitPiecesSQL(db, siteCond string, from, to, end time.Time) string {
	gap := strconv.Itoa(VisitGapMS)
	return fmt.Sprintf(`SELECT site, toUnixTimestamp(hr) AS hour, count(), countIf(pin), sumIf(pgap, pin), sum(pl - pf), sum(pp),
	countIf(pn = 1 AND pp = 1 AND NOT pin AND NOT pout), countIf(pn = 1 AND pp = 1 AND pin AND NOT pout),
	countIf(pn = 1 AND pp = 1 AND NOT pin AND pout), countIf(pn = 1 AND pp = 1 AND pin AND pout)
FROM (
	SELECT site, v, k, any(h) AS hr, min(f) AS pf, max(l) AS pl, sum(n) AS pn, sum(p) AS pp,
		max(c AND h != ph) AS pin, sum(if(c AND h != ph, f - pl0, 0)) AS pgap, max(nf != 0 AND nh != h AND nf - l < %[1]s) AS pout
	FROM (
		SELECT site, v, fs, ls, ns, ps, hs, pls, phs, nfs, nhs, cs,
			arrayCumSum(arrayMap((c, h, ph) -> toUInt32(NOT c OR h != ph), cs, hs, phs)) AS ks
		FROM (
			SELECT site, v, fs, ls, ns, ps, hs, pls, phs, nfs, nhs,
				arrayMap((f, pl) -> toUInt8(pl != 0 AND f - pl < %[1]s), fs, pls) AS cs
			FROM (
				SELECT site, v, arrayMap(e -> e.1, s) AS fs, arrayMap(e -> e.2, s) AS ls, arrayMap(e -> e.3, s) AS ns,
					arrayMap(e -> e.4, s) AS ps, arrayMap(e -> e.5, s) AS hs,
					arrayPushFront(arrayPopBack(ls), toUInt64(0)) AS pls, arrayPushFront(arrayPopBack(hs), toDateTime(0)) AS phs,
					arrayPushBack(arrayPopFront(fs), toUInt64(0)) AS nfs, arrayPushBack(arrayPopFront(hs), toDateTime(0)) AS nhs
				FROM (
					SELECT site, v, arraySort(e -> e.1, groupArray((f, l, n, p, toStartOfHour(t, 'UTC')))) AS s FROM (
						SELECT site, visitor_id AS v, t, minMerge(first) AS f, maxMerge(last) AS l, sumMerge(events) AS n, sumMerge(pageviews) AS p
						FROM %[2]s.%[3]s WHERE %[4]s AND t >= toDateTime(%[5]d) AND t < toDateTime(%[6]d) GROUP BY site, v, t
					) GROUP BY site, v
				)
			)
		)
	) ARRAY JOIN fs AS f, ls AS l, ns AS n, ps AS p, hs AS h, pls AS pl0, phs AS ph, nfs AS nf, nhs AS nh, cs AS c, ks AS k
	WHERE h >= toDateTime(%[7]d) AND h < toDateTime(%[8]d)
	GROUP BY site, v, k
) GROUP BY site, hr`, gap, db, VisitsTable, siteCond, from.Unix()-SegmentSeconds, end.Unix(), from.Unix(), to.Unix())
}

// ParseVisitHours reads the rows of VisitPiecesSQL, by site.
func ParseVisitHours(rows [][]string) (map[string][]VisitHour, error) {
	out := map[string][]VisitHour{}
	for _, r := range rows {
		if len(r) != 2+len(visitHourCols) {
			return nil, fmt.Errorf("clickhouse: visit hour row %q", r)
		}
		t, err := parseUint(r[1])
		if err != nil {
			return nil, err
		}
		v := VisitHour{T: time.Unix(int64(t), 0).UTC()}
		for i, p := range v.fields() {
			if *p, err = parseUint(r[2+i]); err != nil {
				return nil, err
			}
		}
		out[r[0]] = append(out[r[0]], v)
	}
	return out, nil
}

// Querier runs a query and returns its rows (Client does).
type Querier interface {
	Query(ctx context.Context, sql string) ([][]string, error)
}

// HourCounts returns the events per hour in [from, to) of the sites that
// siteCond selects, from the hourly rollup of database db: by site, then
// by the hour's unix seconds.
func HourCounts(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (map[string]map[int64]uint64, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT site, toUnixTimestamp(t), sumMerge(events) FROM %s.%s WHERE %s AND t >= toDateTime(%d) AND t < toDateTime(%d) GROUP BY site, t",
		db, Grains[1].Table, siteCond, from.Unix(), to.Unix()))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int64]uint64{}
	for _, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("clickhouse: hour count row %q", r)
		}
		t, err := strconv.ParseInt(r[1], 10, 64)
		if err != nil {
			return nil, err
		}
		n, err := parseUint(r[2])
		if err != nil {
			return nil, err
		}
		if out[r[0]] == nil {
			out[r[0]] = map[int64]uint64{}
		}
		out[r[0]][t] = n
	}
	return out, nil
}

// WindowCount is what a VisitHour of hour h depends on, as the hourly
// rollup counts it: the events of h and the hours either side.
func WindowCount(counts map[int64]uint64, h int64) uint64 {
	return counts[h-3600] + counts[h] + counts[h+3600]
}

// StoredVisitHours returns the stored VisitHours in [from, to) of the
// sites siteCond selects, in database db, with the Source each was built
// from: by site, then by the hour's unix seconds.
func StoredVisitHours(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (map[string]map[int64]VisitHour, map[string]map[int64]uint64, error) {
	sel := "site, toUnixTimestamp(t)"
	for _, col := range visitHourCols {
		sel += ", argMax(" + col + ", built)"
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s, argMax(source, built) FROM %s.%s WHERE %s AND t >= toDateTime(%d) AND t < toDateTime(%d) GROUP BY site, t",
		sel, db, VisitHoursTable, siteCond, from.Unix(), to.Unix()))
	if err != nil {
		return nil, nil, err
	}
	hours := map[string]map[int64]VisitHour{}
	srcs := map[string]map[int64]uint64{}
	for _, r := range rows {
		if len(r) < 1 {
			continue
		}
		vh, err := ParseVisitHours([][]string{r[:len(r)-1]})
		if err != nil {
			return nil, nil, err
		}
		n, err := parseUint(r[len(r)-1])
		if err != nil {
			return nil, nil, err
		}
		v := vh[r[0]][0]
		if hours[r[0]] == nil {
			hours[r[0]], srcs[r[0]] = map[int64]VisitHour{}, map[int64]uint64{}
		}
		hours[r[0]][v.T.Unix()] = v
		srcs[r[0]][v.T.Unix()] = n
	}
	return hours, srcs, nil
}

// BuildVisitHours stores the VisitHours of every site's hours before
// settled (whole hours) whose stored one is missing or out of date: the
// hourly rollup's WindowCount differs from its Source. It reads those
// counts before the segments, so an hour built from segments that lack
// events the count has is rebuilt at the next call; events that arrive in
// an hour's window later change its count too. It returns the hours
// built.
//
// settled should be at least a segment and the rollups' lateness before
// now, so that the segment after the last hour is complete.
func (c *Client) BuildVisitHours(ctx context.Context, settled time.Time) (int, error) {
	settled = settled.Truncate(time.Hour)
	counts, err := HourCounts(ctx, c, c.db, "1", time.Unix(0, 0), settled.Add(time.Hour))
	if err != nil {
		return 0, fmt.Errorf("visit hours: read the hourly counts: %w", err)
	}
	_, srcs, err := StoredVisitHours(ctx, c, c.db, "1", time.Unix(0, 0), settled)
	if err != nil {
		return 0, fmt.Errorf("visit hours: read the stored hours: %w", err)
	}
	todo := staleHours(counts, srcs, settled.Unix())
	built := 0
	for _, day := range slices.Sorted(maps.Keys(todo)) {
		from := time.Unix(day, 0).UTC()
		to := from.Add(24 * time.Hour)
		if settled.Before(to) {
			to = settled
		}
		rows, err := c.Query(ctx, VisitPiecesSQL(c.db, "1", from, to, to.Add(SegmentSeconds*time.Second)))
		if err != nil {
			return built, fmt.Errorf("visit hours of %s: %w", from.Format(time.DateOnly), err)
		}
		got, err := ParseVisitHours(rows)
		if err != nil {
			return built, err
		}
		now := time.Now().UnixMilli()
		var values []string
		for site, hs := range todo[day] {
			have := map[int64]VisitHour{}
			for _, v := range got[site] {
				have[v.T.Unix()] = v
			}
			for _, h := range hs {
				v := have[h]
				vals := []string{quote(site), strconv.FormatInt(h, 10), strconv.FormatInt(now, 10), strconv.FormatUint(WindowCount(counts[site], h), 10)}
				for _, p := range v.fields() {
					vals = append(vals, strconv.FormatUint(*p, 10))
				}
				values = append(values, "("+strings.Join(vals, ", ")+")")
			}
		}
		if err := c.insertLiterals(ctx, VisitHoursTable, "site, t, built, source, "+strings.Join(visitHourCols, ", "), values); err != nil {
			return built, fmt.Errorf("store the visit hours of %s: %w", from.Format(time.DateOnly), err)
		}
		built += len(values)
	}
	return built, nil
}
