package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// A build of many megabytes of rows (20,000
// visits of one pageview on 20,000 pages in one hour: a row per page, per
// entry and per exit page) is stored whole, and its entry pages count
// every visit once.
func TestBuildVisitDimsLarge(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	hour := time.Now().Add(-3 * time.Hour).Truncate(time.Hour)
	const n = 20000
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = mkEvent(t, "big.example", hour.Add(time.Duration(i)*time.Millisecond).UnixMilli())
		evs[i].URL = fmt.Sprintf("https://big.example/p/%d", i)
		evs[i].VisitorID = uint64(i + 1)
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for i := 0; c.count(t, "SELECT sumMerge(events) FROM "+c.db+".rollup_hours") != fmt.Sprint(n); i++ {
		if i == 500 {
			t.Fatal("the hourly rollup never caught up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	built, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour))
	if err != nil || built != 3 { // the hour and its neighbours
		t.Fatalf("BuildVisitDims: %d hours, %v", built, err)
	}
	if got := c.count(t, "SELECT sum(entries), sum(exits), uniqExact(value) FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '"+EntryPageDim+"' OR dim = '"+ExitPageDim+"'"); got != fmt.Sprintf("%d\t%d\t%d", n, n, n) {
		t.Errorf("entries, exits, pages: %s", got)
	}
	if got := c.count(t, "SELECT sum(pieces), sum(bounce) FROM "+c.db+"."+VisitDimsTable+" WHERE dim = 'page'"); got != fmt.Sprintf("%d\t%d", n, n) {
		t.Errorf("visits and bounces by page: %s", got)
	}
	if got := c.count(t, "SELECT count() FROM "+c.db+"."+VisitDimsTable+" WHERE dim = ''"); got != "3" {
		t.Errorf("%s build markers, want 3", got)
	}
	// Every visitor has the profile of mkEvent's events.
	if got := c.count(t, "SELECT sum(pieces), uniqExact(value) FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '"+ProfileDim+"' AND value != ''"); got != fmt.Sprintf("%d\t1", n) {
		t.Errorf("visits and values of the profile rows: %s", got)
	}
	// None of them is a bot's (BotDim's value "0").
	if got := c.count(t, "SELECT sum(pieces), groupUniqArray(value) FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '"+BotDim+"' AND value != ''"); got != fmt.Sprintf("%d\t['0']", n) {
		t.Errorf("visits and values of the bot rows: %s", got)
	}
	// Nor of the profile with the verdict.
	if got := c.count(t, "SELECT sum(pieces), groupUniqArray(splitByChar('"+profileSep+"', value)[5]) FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '"+ProfileBotDim+"' AND value != ''"); got != fmt.Sprintf("%d\t['0']", n) {
		t.Errorf("visits and verdicts of the profile_bot rows: %s", got)
	}
	if again, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour)); err != nil || again != 0 {
		t.Errorf("a second build: %d hours, %v", again, err)
	}
	// Builds made before the profile_bot rows existed, one also before
	// the bot rows, gain those they lack alone, as part of that build.
	lacking := func(dims string) map[int64]VisitDimBuild {
		t.Helper()
		if err := c.Exec(ctx, "INSERT INTO "+c.db+"."+VisitDimsTable+" SELECT site, dim, value, t, built + 1, source, "+strings.Join(VisitDimCols, ", ")+" FROM "+c.db+"."+VisitDimsTable+" WHERE dim NOT IN ("+dims+")"); err != nil {
			t.Fatal(err)
		}
		old, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
		if err != nil || len(old["big.example"]) != 3 {
			t.Fatalf("builds: %v, %v", old, err)
		}
		return old["big.example"]
	}
	for _, dims := range []string{"'" + ProfileBotDim + "'", "'" + BotDim + "', '" + ProfileBotDim + "'"} {
		old := lacking(dims)
		for h, b := range old {
			if !b.Profiles || b.ProfileBots || b.Bots == strings.Contains(dims, "'"+BotDim+"'") {
				t.Fatalf("hour %d: a build lacking %s: %+v", h, dims, b)
			}
		}
		if again, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour)); err != nil || again != 3 {
			t.Errorf("a build of the rows of %s: %d hours, %v", dims, again, err)
		}
		now, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
		for h, b := range now["big.example"] {
			if ob := old[h]; b.Built != ob.Built || b.Source != ob.Source || !b.Bots || !b.Profiles || !b.ProfileBots {
				t.Errorf("hour %d: %+v after the build of %s, want %+v with them (%v)", h, b, dims, ob, err)
			}
		}
		cond, dim, _ := ProfileCond("value", map[string]string{"country": "DE", BotDim: "0"})
		stored, err := StoredProfileHours(ctx, c, c.db, "big.example", dim, cond, hour.Add(-time.Hour), hour.Add(2*time.Hour), now["big.example"])
		if err != nil || stored[hour.Unix()].Pieces != n {
			t.Errorf("the profile_bot rows of the build: %+v, %v", stored, err)
		}
	}
	// A catch-up cut short after its rows and run again stores them twice
	// under the one build (its built kept): they count once.
	if err := c.Exec(ctx, "INSERT INTO "+c.db+"."+VisitDimsTable+" SELECT site, dim, value, t, built, source, "+strings.Join(VisitDimCols, ", ")+" FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '"+ProfileBotDim+"' AND value != ''"); err != nil {
		t.Fatal(err)
	}
	twice, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
	cond, dim, _ := ProfileCond("value", map[string]string{"country": "DE", BotDim: "0"})
	if stored, err2 := StoredProfileHours(ctx, c, c.db, "big.example", dim, cond, hour.Add(-time.Hour), hour.Add(2*time.Hour), twice["big.example"]); err != nil || err2 != nil || stored[hour.Unix()].Pieces != n {
		t.Errorf("profile_bot rows stored twice: %+v, %v, %v", stored, err, err2)
	}
	// A build made before the bot rows existed (step VersionHumans),
	// up to date otherwise, gains them alone, as part of that build.
	if err := c.Exec(ctx, "INSERT INTO "+c.db+"."+VisitDimsTable+" SELECT site, dim, value, t, built + 1, source, "+strings.Join(VisitDimCols, ", ")+" FROM "+c.db+"."+VisitDimsTable+" WHERE dim != '"+BotDim+"'"); err != nil {
		t.Fatal(err)
	}
	old, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
	if err != nil || len(old["big.example"]) != 3 {
		t.Fatalf("builds: %v, %v", old, err)
	}
	for h, b := range old["big.example"] {
		if !b.Profiles || b.Bots {
			t.Fatalf("hour %d: a build with profiles and without bots: %+v", h, b)
		}
	}
	if again, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour)); err != nil || again != 3 {
		t.Errorf("a build of the bot rows: %d hours, %v", again, err)
	}
	now, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
	for h, b := range now["big.example"] {
		if ob := old["big.example"][h]; b.Built != ob.Built || b.Source != ob.Source || !b.Bots || !b.Profiles {
			t.Errorf("hour %d: %+v after the bot rows' build, want %+v with bots (%v)", h, b, ob, err)
		}
	}
	human := "0"
	stored, err := StoredVisitDims(ctx, c, c.db, "big.example", BotDim, &human, hour.Add(-time.Hour), hour.Add(2*time.Hour), now["big.example"])
	if err != nil || len(stored) != 1 || stored["0"][hour.Unix()].Pieces != n {
		t.Errorf("the bot rows of the build: %+v, %v", stored, err)
	}
	if again, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour)); err != nil || again != 0 {
		t.Errorf("a build after the bot rows': %d hours, %v", again, err)
	}
	// A build made before the profile rows (or the bot rows) existed
	// has no profile (bot) marker: a later one, as such a build, is
	// built again with them.
	if err := c.Exec(ctx, "INSERT INTO "+c.db+"."+VisitDimsTable+" (site, dim, value, t, built, source) SELECT site, '', '', t, built + 1, source FROM "+c.db+"."+VisitDimsTable+" WHERE dim = '' AND value = ''"); err != nil {
		t.Fatal(err)
	}
	builds, err := VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
	if err != nil || len(builds["big.example"]) != 3 {
		t.Fatalf("builds: %v, %v", builds, err)
	}
	for h, b := range builds["big.example"] {
		if b.Profiles || b.Bots || b.ProfileBots {
			t.Errorf("hour %d: a build without profile and bot markers said to have their rows: %+v", h, b)
		}
	}
	if again, err := c.BuildVisitDims(ctx, time.Now().Add(-time.Hour)); err != nil || again != 3 {
		t.Errorf("a build after one without profiles: %d hours, %v", again, err)
	}
	builds, err = VisitDimBuilds(ctx, c, c.db, "1", hour.Add(-time.Hour), hour.Add(2*time.Hour))
	for h, b := range builds["big.example"] {
		if !b.Profiles || !b.Bots || !b.ProfileBots {
			t.Errorf("hour %d: rebuilt without profiles or bots: %+v (%v)", h, b, err)
		}
	}
}

// A build's lack of the late pairs (lacks) is a small comparable set:
// each combination of markers gives its own key and the dimensions to
// build, in lateDims' order, and keys sort by those dimensions, as the
// joined names they replace did.
func TestLateSet(t *testing.T) {
	if len(lateDims) > 8 {
		t.Fatalf("%d late dimensions do not fit lateSet's 8 bits", len(lateDims))
	}
	for _, c := range []struct {
		b    VisitDimBuild
		want []string
	}{
		{VisitDimBuild{Bots: true, ProfileBots: true}, nil},
		{VisitDimBuild{Bots: false, ProfileBots: true}, []string{BotDim}},
		{VisitDimBuild{Bots: true, ProfileBots: false}, []string{ProfileBotDim}},
		{VisitDimBuild{}, []string{BotDim, ProfileBotDim}},
	} {
		s := c.b.lacks()
		if got := s.dims(); !slices.Equal(got, c.want) || (s == 0) != (c.want == nil) {
			t.Errorf("%+v: lacks %b, dims %q; want %q", c.b, s, got, c.want)
		}
	}
	sets := []lateSet{VisitDimBuild{Bots: true}.lacks(), VisitDimBuild{}.lacks(), VisitDimBuild{ProfileBots: true}.lacks()}
	slices.SortFunc(sets, compareLate)
	var joined []string
	for _, s := range sets {
		joined = append(joined, strings.Join(s.dims(), ","))
	}
	if !slices.IsSorted(joined) || len(slices.Compact(slices.Clone(joined))) != 3 {
		t.Errorf("sorted: %q, want three keys in the order of their joined names", joined)
	}
}
