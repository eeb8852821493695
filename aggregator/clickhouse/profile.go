package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Visits under combined filters of a visitor's profile, from a few
// thousand rows:
//
// VisitDimsTable's rows of one dimension answer one filter. Two filters
// (country=DE and device=mobile) select the events that match both, and
// their visits cannot be added up from each filter's alone; reading them
// from MinuteAudienceTable sorts every matching visitor's minutes per query.
// But country, device, browser and OS are a visitor's: the visitor id
// hashes the client address and the user agent (the edge's visitor
// scheme), which give all four, so one visitor's events share them, and
// so do a visit's. VisitDimsTable therefore also holds the VisitHours of
// each profile, ProfileDim rows whose value is the four values joined
// (ProfileValue): the visits of any filters on ProfileDims are the sum
// of the rows of the profiles that match them, since no visit has events
// of two profiles. A visit whose visitor's country changed within it (the
// geolocation database updated under it) counts once per country under
// filters that leave the country open, where the events table counts it
// once.
//
// BuildVisitDims writes ProfileDim's rows with the others and a second
// marker (ProfileDim, value "") with each build; a build without it
// (made before the profile rows existed) is rebuilt, and until then a
// reader computes the profile rows of those hours from the events table.
//
// Bots left out (the dashboard's bots=exclude) under a filter of a
// profile's dimension, the visits are those of the events of the
// filtered profiles that are not a bot's: ProfileBotDim's rows, the
// profile with the bot verdict (BotDim's value) as a fifth part, answer
// them as ProfileDim's answer the filters alone. The verdict is an
// event's, not a visitor's, so a visit with events of both counts under
// each with its own events. A build made before those rows existed gains
// them alone (as it gained BotDim's), with their own marker.

// ProfileDim is VisitDimsTable's dimension of a visitor's profile;
// ProfileBotDim that of the profile and an event's bot verdict.
const (
	ProfileDim    = "profile"
	ProfileBotDim = "profile_bot"
)

// ProfileDims are the dimensions a profile is made of, in its value's
// order: the most often filtered first, so that a filter on the first
// narrows the rows read to a prefix of the value.
var ProfileDims = []string{"country", "device", "browser", "os"}

// profileSep separates a profile's values; the values never hold it
// (ProfileExpr removes it).
const profileSep = "\x1f"

// ProfileExpr is the ClickHouse expression of an events row's profile.
func ProfileExpr() string {
	parts := make([]string, len(ProfileDims))
	for i, name := range ProfileDims {
		d, ok := DimensionByName(name)
		if !ok {
			panic("clickhouse: ProfileDims names an unknown dimension " + name)
		}
		parts[i] = "replaceAll(" + d.Expr + ", " + quote(profileSep) + ", '')"
	}
	return "concat(" + strings.Join(parts, ", "+quote(profileSep)+", ") + ")"
}

// profileBotExpr is ProfileBotDim's value for a row of the events table.
func profileBotExpr() string {
	return "concat(" + ProfileExpr() + ", " + quote(profileSep) + ", " + botExpr() + ")"
}

// ProfileValue is the profile of values (by ProfileDims' order, then
// for ProfileBotDim the verdict), as ProfileExpr computes it.
func ProfileValue(values ...string) string {
	return strings.Join(values, profileSep)
}

// ProfileCond returns the condition on col, a column of values of
// VisitDimsTable's dimension dim, that filters (dimension name to value)
// select: dim is ProfileDim, or ProfileBotDim where the filters name
// BotDim ("0": the events that are not a bot's). ok is false unless the
// filters are two or more (one filter has VisitDimsTable's rows of its
// dimension), all of ProfileDims and BotDim, and no value holds the
// separator.
func ProfileCond(col string, filters map[string]string) (cond, dim string, ok bool) {
	if len(filters) < 2 {
		return "", "", false
	}
	parts, dim := ProfileDims, ProfileDim
	if _, ok := filters[BotDim]; ok {
		parts, dim = append(slices.Clone(ProfileDims), BotDim), ProfileBotDim
	}
	var conds []string
	prefix, leading := "", true
	for i, name := range parts {
		v, has := filters[name]
		if !has {
			leading = false
			continue
		}
		if strings.Contains(v, profileSep) {
			return "", "", false
		}
		conds = append(conds, "splitByChar("+quote(profileSep)+", "+col+")["+strconv.Itoa(i+1)+"] = "+quote(v))
		if leading {
			// The separator after each part but the last: a prefix of
			// every part ends where the value does.
			prefix += v
			if i < len(parts)-1 {
				prefix += profileSep
			}
		}
	}
	if len(conds) != len(filters) {
		return "", "", false
	}
	if prefix != "" {
		// A LIKE with a constant prefix narrows the read to the sort
		// key's range of that prefix.
		conds = append([]string{col + " LIKE " + quote(likeEscape(prefix)+"%")}, conds...)
	}
	return strings.Join(conds, " AND "), dim, true
}

// likeEscape escapes LIKE's metacharacters in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// StoredProfileHours returns, per hour (unix seconds) in [from, to) of
// builds that hold profile rows, the sum of site's rows of dim
// (ProfileDim or ProfileBotDim) that cond (from ProfileCond over
// "value") selects, of the hour's build in builds. A row stored twice
// under one build (a catch-up of an older build, which keeps its built,
// cut short before its marker and run again) counts once: the table
// replaces such rows only when it merges them.
func StoredProfileHours(ctx context.Context, q Querier, db, site, dim, cond string, from, to time.Time, builds map[int64]VisitDimBuild) (map[int64]VisitHour, error) {
	sums := make([]string, len(visitHourCols))
	once := make([]string, len(visitHourCols))
	for i, c := range visitHourCols {
		sums[i] = "sum(" + c + ")"
		once[i] = "any(" + c + ") AS " + c
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT toUnixTimestamp(t), built, %s FROM (SELECT t, built, %s FROM %s.%s WHERE site = %s AND dim = %s AND value != '' AND (%s) AND t >= toDateTime(%d) AND t < toDateTime(%d) GROUP BY value, t, built) GROUP BY t, built",
		strings.Join(sums, ", "), strings.Join(once, ", "), db, VisitDimsTable, quote(site), quote(dim), cond, from.Unix(), to.Unix()))
	if err != nil {
		return nil, err
	}
	out := map[int64]VisitHour{}
	for _, r := range rows {
		if len(r) != 2+len(visitHourCols) {
			return nil, fmt.Errorf("clickhouse: profile hour row %q", r)
		}
		h, latest, err := builtHour(r[0], r[1], builds, true)
		if err != nil {
			return nil, err
		}
		if !latest {
			continue
		}
		v := VisitHour{T: time.Unix(h, 0).UTC()}
		if err := parseFields(v.fields(), r[2:]); err != nil {
			return nil, err
		}
		out[h] = v
	}
	return out, nil
}

// Add adds o's counts to v's.
func (v *VisitHour) Add(o VisitHour) {
	for i, p := range v.fields() {
		*p += *o.fields()[i]
	}
}
