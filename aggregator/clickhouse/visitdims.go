package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Visits under a filter, and entry and exit pages, from a few hundred rows:
//
// A filter narrows the dashboard to the events whose dimension has a
// value, and its visits are those of these events alone (a visitor's
// matching events with gaps under 30 minutes), as the events table
// answers the same question. Those add up per hour exactly as a site's
// visits do (see VisitHour): the matching events of each visitor cut at
// hour boundaries into pieces that remember whether they join the piece
// before or after. So VisitDimsTable holds a VisitHour per site, hour,
// dimension and value, computed from the events table by the rollups'
// lease holder (BuildVisitDims) for the settled hours, and the per-
// visitor half-hour segments that step 7's rollup_visits keeps for the
// whole site, here per value, exist only inside that query.
//
// Entry and exit pages are of a site's visits (no filter): the page of a
// visit's first event and of its last. Cut at hour boundaries, each
// piece has a first and a last page; a visit of a range enters at the
// first page of its piece that joins no piece before it in the range,
// which is every piece that joins none, plus, in the range's first hour,
// those that join one of the hour before. The same holds of exits and
// the range's last hour. VisitDimsTable keeps those four counts per page
// and hour as dimensions EntryPageDim and ExitPageDim.
//
// A build of a site's hour writes a marker row (dimension and value "")
// with, as Source, the events the hourly rollup held in the hour and its
// neighbours when it read them (WindowCount), and every row of the build
// carries its built time: a reader takes an hour's rows of the marker's
// latest build only (a value that a later build no longer has is not
// read), and only while the marker's Source still matches the hourly
// rollup; the other hours it computes from the events table with the
// same query (VisitDimPiecesSQL).

// insertChunk bounds the statements of BuildVisitDims' inserts, so that
// a month's first build is many modest statements, not one of many
// megabytes.
const insertChunk = 200 << 10

// VisitDimsTable holds the per-dimension visit hours (ReplacingMergeTree
// by built, keyed by site, dim, value and hour).
const VisitDimsTable = "visit_dims"

// VersionVisitDims is the schema step that creates VisitDimsTable.
const VersionVisitDims = 8

// The dimensions of VisitDimsTable's entry and exit page rows.
const (
	EntryPageDim = "entry_page"
	ExitPageDim  = "exit_page"
)

// VisitDim is one hour of one value's visits (VisitHour) or of one page's
// entries and exits.
type VisitDim struct {
	Site, Dim, Value string
	VisitHour
	// Entries are the pieces that join none before them, EntriesIn
	// those that do (entries only in a range's first hour); Exits and
	// ExitsOut likewise with the piece after (exits only in a range's
	// last hour).
	Entries, EntriesIn, Exits, ExitsOut uint64
}

var visitDimExtra = []string{"entries", "entries_in", "exits", "exits_out"}

func (v *VisitDim) extra() []*uint64 {
	return []*uint64{&v.Entries, &v.EntriesIn, &v.Exits, &v.ExitsOut}
}

// VisitDimCols are VisitDimsTable's count columns, in order.
var VisitDimCols = append(slices.Clone(visitHourCols), visitDimExtra...)

func (v *VisitDim) fields() []*uint64 { return append(v.VisitHour.fields(), v.extra()...) }

func visitDimsSchema(l Layout) []string {
	cols := "site String,\n\t\tdim String,\n\t\tvalue String,\n\t\tt DateTime,\n\t\tbuilt UInt64,\n\t\tsource UInt64"
	for _, c := range VisitDimCols {
		cols += ",\n\t\t" + c + " UInt64"
	}
	return l.CreateTable(VisitDimsTable, cols, "ReplacingMergeTree(built)", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, dim, value, t)`)
}

// VisitDimPairs is the ARRAY JOIN list of (dimension, value) of an events
// row for the dimensions rolled up by step 7, after (”, ”) for the
// whole site's visits (whose pieces give the entry and exit pages), and
// then its profile (ProfileDim), whether it is a bot's (BotDim) and the
// two together (ProfileBotDim); with
// only, just the pairs of the dimensions it names ("" for the whole
// site's). Every event is read once per pair before any condition on the
// pair applies, so a question about one dimension lists that one only.
func VisitDimPairs(only ...string) string {
	var pairs []string
	add := func(name, expr string) {
		if len(only) == 0 || slices.Contains(only, name) {
			pairs = append(pairs, "('"+name+"', "+expr+")")
		}
	}
	add("", "''")
	for _, d := range Dimensions {
		if d.Collected && !d.Visit && d.Since <= VersionRollups {
			add(d.Name, d.Expr)
		}
	}
	add(ProfileDim, ProfileExpr())
	add(BotDim, botExpr())
	add(ProfileBotDim, profileBotExpr())
	return "[" + strings.Join(pairs, ", ") + "]"
}

// VisitDimPiecesSQL returns the query whose rows are site, dim, value,
// hour (unix seconds), entry page, exit page, then visitHourCols and the
// pieces that join the hour after: the visit pieces, per (dimension,
// value) stream of the events that siteCond and pairCond (a condition on
// dv, the (dim, value) pair) select among the pairs of the dimensions
// dims names (VisitDimPairs; none: all), in the hours [from, to), from the
// events in [from - a segment, end). The entry and exit pages are "" but
// in the whole site's stream (dim ""). As VisitPiecesSQL, from the
// per-visitor half-hour segments; from, to and end must be whole
// segments. The page of a segment's first event is the least by (time,
// page), so that ties break alike everywhere.
func VisitDimPiecesSQL(db, siteCond, pairCond string, dims []string, from, to, end time.Time) string {
	gap := strconv.Itoa(VisitGapMS)
	seg := strconv.Itoa(SegmentSeconds)
	page := "if(dv.1 = '', path(url), '')"
	return fmt.Sprintf(`SELECT site, dim, value, toUnixTimestamp(hr) AS hour, ep, xp, count(), countIf(pin), sumIf(pgap, pin), sum(pl - pf), sum(pp),
	countIf(pn = 1 AND pp = 1 AND NOT pin AND NOT pout), countIf(pn = 1 AND pp = 1 AND pin AND NOT pout),
	countIf(pn = 1 AND pp = 1 AND NOT pin AND pout), countIf(pn = 1 AND pp = 1 AND pin AND pout), countIf(pout)
FROM (
	SELECT site, dim, value, v, k, any(h) AS hr, min(f) AS pf, max(l) AS pl, sum(n) AS pn, sum(p) AS pp,
		max(c AND h != ph) AS pin, sum(if(c AND h != ph, f - pl0, 0)) AS pgap, max(nf != 0 AND nh != h AND nf - l < %[1]s) AS pout,
		argMin(fp, f) AS ep, argMax(lp, l) AS xp
	FROM (
		SELECT site, dim, value, v, fs, ls, ns, ps, hs, fps, lps, pls, phs, nfs, nhs, cs,
			arrayCumSum(arrayMap((c, h, ph) -> toUInt32(NOT c OR h != ph), cs, hs, phs)) AS ks
		FROM (
			SELECT site, dim, value, v, fs, ls, ns, ps, hs, fps, lps, pls, phs, nfs, nhs,
				arrayMap((f, pl) -> toUInt8(pl != 0 AND f - pl < %[1]s), fs, pls) AS cs
			FROM (
				SELECT site, dim, value, v, arrayMap(e -> e.1, s) AS fs, arrayMap(e -> e.2, s) AS ls, arrayMap(e -> e.3, s) AS ns,
					arrayMap(e -> e.4, s) AS ps, arrayMap(e -> e.5, s) AS hs, arrayMap(e -> e.6, s) AS fps, arrayMap(e -> e.7, s) AS lps,
					arrayPushFront(arrayPopBack(ls), toUInt64(0)) AS pls, arrayPushFront(arrayPopBack(hs), toDateTime(0)) AS phs,
					arrayPushBack(arrayPopFront(fs), toUInt64(0)) AS nfs, arrayPushBack(arrayPopFront(hs), toDateTime(0)) AS nhs
				FROM (
					SELECT site, dim, value, v, arraySort(e -> e.1, groupArray((f, l, n, p, toStartOfHour(t, 'UTC'), fp, lp))) AS s FROM (
						SELECT site, dv.1 AS dim, dv.2 AS value, visitor_id AS v, toDateTime(intDiv(toUInt32(ts), %[2]s) * %[2]s) AS t,
							min(ts_ms) AS f, max(ts_ms) AS l, count() AS n, countIf(name = 'pageview') AS p,
							argMin(%[3]s, (ts_ms, %[3]s)) AS fp, argMax(%[3]s, (ts_ms, %[3]s)) AS lp
						FROM %[4]s.events ARRAY JOIN %[5]s AS dv
						WHERE %[6]s AND (%[7]s) AND visitor_id != 0 AND ts >= toDateTime(%[8]d) AND ts < toDateTime(%[9]d)
						GROUP BY site, dim, value, v, t
					) GROUP BY site, dim, value, v
				)
			)
		)
	) ARRAY JOIN fs AS f, ls AS l, ns AS n, ps AS p, hs AS h, fps AS fp, lps AS lp, pls AS pl0, phs AS ph, nfs AS nf, nhs AS nh, cs AS c, ks AS k
	WHERE h >= toDateTime(%[10]d) AND h < toDateTime(%[11]d)
	GROUP BY site, dim, value, v, k
) GROUP BY site, dim, value, hr, ep, xp`, gap, seg, page, db, VisitDimPairs(dims...), siteCond, pairCond,
		from.Unix()-SegmentSeconds, end.Unix(), from.Unix(), to.Unix())
}

// ParseVisitDims reads the rows of VisitDimPiecesSQL: a VisitDim per
// site, dimension, value and hour, the whole site's pieces turned into
// entry and exit page rows.
func ParseVisitDims(rows [][]string) ([]VisitDim, error) {
	type key struct {
		site, dim, value string
		t                int64
	}
	by := map[key]*VisitDim{}
	get := func(k key) *VisitDim {
		v := by[k]
		if v == nil {
			v = &VisitDim{Site: k.site, Dim: k.dim, Value: k.value}
			v.T = time.Unix(k.t, 0).UTC()
			by[k] = v
		}
		return v
	}
	n := 6 + len(visitHourCols) + 1
	for _, r := range rows {
		if len(r) != n {
			return nil, fmt.Errorf("clickhouse: visit dim row %q", r)
		}
		var vals [16]uint64
		for i := 3; i < n; i++ {
			if i == 4 || i == 5 {
				continue
			}
			x, err := parseUint(r[i])
			if err != nil {
				return nil, err
			}
			vals[i] = x
		}
		t := int64(vals[3])
		var h VisitHour
		for i, p := range h.fields() {
			*p = vals[6+i]
		}
		outs := vals[n-1]
		if r[1] != "" {
			v := get(key{r[0], r[1], r[2], t})
			for i, p := range v.VisitHour.fields() {
				*p += *h.fields()[i]
			}
			continue
		}
		en := get(key{r[0], EntryPageDim, r[4], t})
		en.Entries += h.Pieces - h.Joins
		en.EntriesIn += h.Joins
		ex := get(key{r[0], ExitPageDim, r[5], t})
		ex.Exits += h.Pieces - outs
		ex.ExitsOut += outs
	}
	out := make([]VisitDim, 0, len(by))
	for _, v := range by {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b VisitDim) int {
		return strings.Compare(a.Site+"\x00"+a.Dim+"\x00"+a.Value, b.Site+"\x00"+b.Dim+"\x00"+b.Value)*2 + int(a.T.Compare(b.T))
	})
	return out, nil
}

// VisitDimBuild is the latest build of a site's hour in VisitDimsTable.
type VisitDimBuild struct {
	Built, Source uint64
	// Profiles: the build holds ProfileDim's rows (its second marker,
	// dimension ProfileDim and value "", has its Built); Bots likewise
	// BotDim's (step VersionHumans), ProfileBots ProfileBotDim's.
	Profiles, Bots, ProfileBots bool
}

// buildMarkers are the dimensions of a build's marker rows (value ""):
// the whole site's, then those of the pairs added since step
// VersionVisitDims, whose rows a build without that marker lacks.
var buildMarkers = []string{"", ProfileDim, BotDim, ProfileBotDim}

// lateDims are the dimensions of the pairs added to builds after
// ProfileDim's, in the order a build's lack of them is listed (lateSet).
var lateDims = [...]string{BotDim, ProfileBotDim}

// lateSet is a set of lateDims, bit i standing for lateDims[i]: a
// comparable key for grouping builds by what they lack.
type lateSet uint8

// lacks returns the lateDims b lacks: an up-to-date build gains them
// alone.
func (b VisitDimBuild) lacks() lateSet {
	var s lateSet
	for i, has := range [len(lateDims)]bool{b.Bots, b.ProfileBots} {
		if !has {
			s |= 1 << i
		}
	}
	return s
}

// dims returns the dimensions in s, in lateDims' order; nil if none.
func (s lateSet) dims() []string {
	var dims []string
	for i, d := range lateDims {
		if s&(1<<i) != 0 {
			dims = append(dims, d)
		}
	}
	return dims
}

// compareLate orders lateSets by their dims, name by name.
func compareLate(a, b lateSet) int { return slices.Compare(a.dims(), b.dims()) }

// VisitDimBuilds returns the latest build of each hour in [from, to) of
// the sites siteCond selects: by site, then by the hour's unix seconds.
func VisitDimBuilds(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (map[string]map[int64]VisitDimBuild, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT site, toUnixTimestamp(t), maxIf(built, dim = ''), argMaxIf(source, built, dim = ''), maxIf(built, dim = %[1]s), maxIf(built, dim = %[2]s), maxIf(built, dim = %[8]s) FROM %[3]s.%[4]s WHERE %[5]s AND dim IN ('', %[1]s, %[2]s, %[8]s) AND value = '' AND t >= toDateTime(%[6]d) AND t < toDateTime(%[7]d) GROUP BY site, t HAVING countIf(dim = '') > 0",
		quote(ProfileDim), quote(BotDim), db, VisitDimsTable, siteCond, from.Unix(), to.Unix(), quote(ProfileBotDim)))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int64]VisitDimBuild{}
	for _, r := range rows {
		if len(r) != 7 {
			return nil, fmt.Errorf("clickhouse: visit dim build row %q", r)
		}
		var v [6]uint64
		for i := range v {
			if v[i], err = parseUint(r[1+i]); err != nil {
				return nil, err
			}
		}
		if out[r[0]] == nil {
			out[r[0]] = map[int64]VisitDimBuild{}
		}
		out[r[0]][int64(v[0])] = VisitDimBuild{Built: v[1], Source: v[2], Profiles: v[3] == v[1], Bots: v[4] == v[1], ProfileBots: v[5] == v[1]}
	}
	return out, nil
}

// staleHours returns, per day (unix seconds) and site, the hours before
// settled whose stored build is missing or was built from other counts
// than the hourly rollup's now (WindowCount), and those of sites whose
// events are all gone.
func staleHours(counts map[string]map[int64]uint64, srcs map[string]map[int64]uint64, settled int64) map[int64]map[string][]int64 {
	todo := map[int64]map[string][]int64{}
	need := func(site string, h int64) {
		day := h - h%86400
		if todo[day] == nil {
			todo[day] = map[string][]int64{}
		}
		todo[day][site] = append(todo[day][site], h)
	}
	for site, cs := range counts {
		seen := map[int64]bool{}
		for h := range cs {
			for _, hh := range []int64{h - 3600, h, h + 3600} {
				if seen[hh] || hh >= settled {
					continue
				}
				seen[hh] = true
				if s, ok := srcs[site][hh]; !ok || s != WindowCount(cs, hh) {
					need(site, hh)
				}
			}
		}
	}
	for site, ss := range srcs {
		for h, s := range ss {
			if counts[site] == nil && s != 0 {
				need(site, h)
			}
		}
	}
	return todo
}

// BuildVisitDims stores the VisitDims of every site's hours before
// settled whose stored build is missing or out of date, as
// BuildVisitHours does for VisitHoursTable, one query per day over the
// span of its hours to build. A build that is up to date but lacks the
// rows of pairs added since its profile rows (BotDim's, made since step
// VersionHumans; ProfileBotDim's) gains them alone, as part of that
// build: a query of those pairs per event, not all of them. It returns
// the hours built (either way).
func (c *Client) BuildVisitDims(ctx context.Context, settled time.Time) (int, error) {
	settled = settled.Truncate(time.Hour)
	counts, err := HourCounts(ctx, c, c.db, "1", time.Unix(0, 0), settled.Add(time.Hour))
	if err != nil {
		return 0, fmt.Errorf("visit dims: read the hourly counts: %w", err)
	}
	builds, err := VisitDimBuilds(ctx, c, c.db, "1", time.Unix(0, 0), settled)
	if err != nil {
		return 0, fmt.Errorf("visit dims: read the stored builds: %w", err)
	}
	srcs := map[string]map[int64]uint64{}
	for site, bs := range builds {
		srcs[site] = map[int64]uint64{}
		for h, b := range bs {
			if b.Profiles { // else built before ProfileDim's rows: again
				srcs[site][h] = b.Source
			}
		}
	}
	todo := staleHours(counts, srcs, settled.Unix())
	// The builds with the profile rows, not to be made again (not in
	// todo), that lack later pairs' rows: by day and the pairs lacked.
	type lack struct {
		day  int64
		dims lateSet
	}
	late := map[lack]map[string][]int64{}
	for site, bs := range builds {
		for h, b := range bs {
			k := lack{h - h%86400, b.lacks()}
			if b.Profiles && k.dims != 0 && h < settled.Unix() && !slices.Contains(todo[k.day][site], h) {
				if late[k] == nil {
					late[k] = map[string][]int64{}
				}
				late[k][site] = append(late[k][site], h)
			}
		}
	}
	built := 0
	for _, k := range slices.SortedFunc(maps.Keys(late), func(a, b lack) int { return cmp.Or(cmp.Compare(a.day, b.day), compareLate(a.dims, b.dims)) }) {
		n, err := c.buildVisitDimsDay(ctx, counts, late[k], k.dims.dims(), func(site string, h int64) string { return strconv.FormatUint(builds[site][h].Built, 10) })
		built += n
		if err != nil {
			return built, err
		}
	}
	for _, day := range slices.Sorted(maps.Keys(todo)) {
		now := strconv.FormatInt(time.Now().UnixMilli(), 10)
		n, err := c.buildVisitDimsDay(ctx, counts, todo[day], nil, func(string, int64) string { return now })
		built += n
		if err != nil {
			return built, err
		}
	}
	return built, nil
}

// buildVisitDimsDay stores the VisitDims of the pairs of dims (nil: all,
// with every marker; else those dimensions' markers) of one day's hours
// by site, as build built(site, hour), its markers' Source from counts
// (HourCounts read before: a later event makes the build out of date).
// Only the day's hours to build are read: after the first build, the one
// or two hours that settled since the last call. It returns the hours
// built.
func (c *Client) buildVisitDimsDay(ctx context.Context, counts map[string]map[int64]uint64, hours map[string][]int64, dims []string, built func(site string, h int64) string) (int, error) {
	var lo, hi int64 = math.MaxInt64, 0
	for _, hs := range hours {
		for _, h := range hs {
			lo, hi = min(lo, h), max(hi, h+3600)
		}
	}
	from, to := time.Unix(lo, 0).UTC(), time.Unix(hi, 0).UTC()
	rows, err := c.Query(ctx, VisitDimPiecesSQL(c.db, "1", "1", dims, from, to, to.Add(SegmentSeconds*time.Second)))
	if err != nil {
		return 0, fmt.Errorf("visit dims of %s: %w", from.Format(time.DateOnly), err)
	}
	got, err := ParseVisitDims(rows)
	if err != nil {
		return 0, err
	}
	markers := buildMarkers
	if dims != nil {
		markers = dims
	}
	want := map[string]map[int64]bool{}
	var values, marks []string
	n := 0
	for site, hs := range hours {
		want[site] = map[int64]bool{}
		for _, h := range hs {
			want[site][h] = true
			n++
			for _, dim := range markers {
				marks = append(marks, fmt.Sprintf("(%s, %s, '', %d, %s, %d%s)", quote(site), quote(dim), h, built(site, h), WindowCount(counts[site], h), strings.Repeat(", 0", len(VisitDimCols))))
			}
		}
	}
	for _, v := range got {
		if !want[v.Site][v.T.Unix()] {
			continue
		}
		vals := []string{quote(v.Site), quote(v.Dim), quote(v.Value), strconv.FormatInt(v.T.Unix(), 10), built(v.Site, v.T.Unix()), "0"}
		for _, p := range v.fields() {
			vals = append(vals, strconv.FormatUint(*p, 10))
		}
		values = append(values, "("+strings.Join(vals, ", ")+")")
	}
	// The markers after every row of their hours: a build cut short
	// leaves its rows unread.
	cols := "site, dim, value, t, built, source, " + strings.Join(VisitDimCols, ", ")
	if err := c.insertLiterals(ctx, VisitDimsTable, cols, values, marks); err != nil {
		return 0, fmt.Errorf("store the visit dims of %s: %w", from.Format(time.DateOnly), err)
	}
	return n, nil
}

// StoredVisitDims returns, per hour (unix seconds) in [from, to), the
// rows of site's dimension dim with value (any value if value is nil)
// that belong to the hour's build in builds: by value, then hour.
func StoredVisitDims(ctx context.Context, q Querier, db, site, dim string, value *string, from, to time.Time, builds map[int64]VisitDimBuild) (map[string]map[int64]VisitDim, error) {
	cond := "site = " + quote(site) + " AND dim = " + quote(dim)
	if value != nil {
		cond += " AND value = " + quote(*value)
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT value, toUnixTimestamp(t), built, %s FROM %s.%s WHERE %s AND t >= toDateTime(%d) AND t < toDateTime(%d)",
		strings.Join(VisitDimCols, ", "), db, VisitDimsTable, cond, from.Unix(), to.Unix()))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int64]VisitDim{}
	for _, r := range rows {
		if len(r) != 3+len(VisitDimCols) {
			return nil, fmt.Errorf("clickhouse: visit dim row %q", r)
		}
		h, latest, err := builtHour(r[1], r[2], builds, false)
		if err != nil {
			return nil, err
		}
		if !latest {
			continue
		}
		v := VisitDim{Site: site, Dim: dim, Value: r[0]}
		v.T = time.Unix(h, 0).UTC()
		if err := parseFields(v.fields(), r[3:]); err != nil {
			return nil, err
		}
		if out[r[0]] == nil {
			out[r[0]] = map[int64]VisitDim{}
		}
		out[r[0]][h] = v
	}
	return out, nil
}

// builtHour parses a stored row's hour (unix seconds) and build, and
// reports whether that build is the hour's latest in builds (and, with
// profiles, holds the profile rows).
func builtHour(hour, built string, builds map[int64]VisitDimBuild, profiles bool) (int64, bool, error) {
	h, err := strconv.ParseInt(hour, 10, 64)
	if err != nil {
		return 0, false, err
	}
	b, err := parseUint(built)
	if err != nil {
		return 0, false, err
	}
	bb, ok := builds[h]
	return h, ok && bb.Built == b && (bb.Profiles || !profiles), nil
}

// parseFields parses vals into the counts ps point to, in order.
func parseFields(ps []*uint64, vals []string) (err error) {
	for i, p := range ps {
		if *p, err = parseUint(vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// insertLiterals inserts rows (each "(v1, v2, ...)" of plain literals)
// into table's columns cols, the rows of each group after those of the
// groups before, in statements of at most insertChunk bytes: ClickHouse
// parses an expression in VALUES only within the read buffer it falls
// in, and one cut at a buffer's end fails the insert, so rows are plain
// literals and statements bounded. In a cluster the insert returns once
// every shard has its rows.
func (c *Client) insertLiterals(ctx context.Context, table, cols string, groups ...[]string) error {
	settings := maps.Clone(c.insertSettings)
	if settings == nil {
		settings = map[string]string{}
	}
	if c.layout.Clustered() {
		settings["insert_distributed_sync"] = "1"
	}
	for _, vs := range groups {
		for len(vs) > 0 {
			n, size := 0, 0
			for n < len(vs) && (n == 0 || size+len(vs[n]) < insertChunk) {
				size += len(vs[n]) + 2
				n++
			}
			if err := c.execSettings(ctx, "INSERT INTO "+c.db+"."+table+" ("+cols+") VALUES "+strings.Join(vs[:n], ", "), settings); err != nil {
				return err
			}
			vs = vs[n:]
		}
	}
	return nil
}
