package clickhouse

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/aggregator/lease"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// rollupTotals reads, for each step 7 rollup, the events it holds and
// what the events table says it should hold, with the visitors of the
// day rollup against the exact count.
//
// From step VersionBotDims on, BotDimHoursTable stands in for DimTable,
// whose view the step drops; the step 7 backfill tests migrate to the
// step before it.
func rollupTotals(t *testing.T, c *Client) (got, want string) {
	t.Helper()
	var g, w []string
	_, bot, err := c.BotDimsCutoff(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rollups() {
		if r.table == DimTable && bot {
			r = botDimHours()
		}
		cond := "1"
		if r.check != "" {
			cond = r.check
		}
		g = append(g, r.table+" "+c.count(t, "SELECT sumMerge(events) FROM "+c.db+"."+r.table+" WHERE "+cond))
		ecount := "count()"
		if r.where != "" {
			ecount = "countIf(" + r.where + ")"
		}
		w = append(w, r.table+" "+c.count(t, "SELECT "+ecount+" FROM "+c.db+".events"))
	}
	g = append(g, "visitors "+c.count(t, "SELECT uniqCombinedIfMerge(visitors) FROM "+c.db+".rollup_days"))
	w = append(w, "visitors "+c.count(t, "SELECT uniqExactIf(visitor_id, visitor_id != 0) FROM "+c.db+".events"))
	return strings.Join(g, ", "), strings.Join(w, ", ")
}

// A database with events from before step 7: the views roll up events
// from the cut-off on, the backfill those before it, once, and again
// only for a month where an event arrived late; no event is counted
// twice, including those stored between step 7 and the backfill.
func TestBackfillRollups(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.migrate(ctx, Migrations[:5], "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var seq uint64
	evs := func(n int, at time.Time, step time.Duration) []event.Event {
		var out []event.Event
		for i := range n {
			e := mkEvent(t, "old.example", at.Add(time.Duration(i)*step).UnixMilli())
			seq++
			e.VisitorID = seq % 7 // 0 for some: no visitor id
			if i%3 == 0 {
				e.Name = "signup"
			}
			out = append(out, e)
		}
		return out
	}
	// Two months of history before the upgrade.
	if err := c.insertAsStored(ctx, evs(300, now.AddDate(0, -2, 0), 4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	defer func(m time.Duration) { CutoffMargin = m }(CutoffMargin)
	CutoffMargin = 3 * time.Second
	if _, err := c.MigrateTo(ctx, VersionBotDims-1); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.RollupCutoff(ctx)
	if err != nil || !ok || cutoff.Before(now) {
		t.Fatalf("cut-off %v %v %v, want after %v", cutoff, ok, err, now)
	}
	// Stored after the views exist but before the cut-off: the backfill's.
	if err := c.InsertEvents(ctx, evs(20, now.Add(-time.Hour), time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cutoff) + 100*time.Millisecond)
	// From the cut-off on: the views'.
	if err := c.InsertEvents(ctx, evs(30, cutoff, time.Second)); err != nil {
		t.Fatal(err)
	}
	got, want := rollupTotals(t, c)
	if got == want {
		t.Fatalf("rolled up before the backfill: %s", got)
	}
	pending := func() bool {
		t.Helper()
		_, p, err := BackfillPending(ctx, c, c.db, "old.example", now.AddDate(0, -3, 0), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if !pending() {
		t.Fatal("the backfill is not pending before it ran")
	}
	res, err := c.BackfillRollups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pending() {
		t.Fatal("the backfill is pending after it ran")
	}
	if len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v", res)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the backfill: %s\nevents say %s", got, want)
	}
	res, err = c.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after a second run: %s\nevents say %s", got, want)
	}
	// An event from before the cut-off that arrives late.
	if err := c.InsertEvents(ctx, evs(1, now.AddDate(0, -2, 0), 0)); err != nil {
		t.Fatal(err)
	}
	res, err = c.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) != len(rollups()) {
		t.Fatalf("late event: %+v %v", res, err)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the late event: %s\nevents say %s", got, want)
	}
	// The day rollup's buckets agree with the events, day by day.
	q := func(sql string) string { return c.count(t, fmt.Sprintf(sql, c.db)) }
	if got, want := q("SELECT t, sumMerge(events), sumMerge(pageviews) FROM %s.rollup_days GROUP BY t ORDER BY t"),
		q("SELECT toStartOfDay(ts, 'UTC') AS t, count(), countIf(name = 'pageview') FROM %s.events GROUP BY t ORDER BY t"); got != want {
		t.Fatalf("days:\n%s\nevents:\n%s", got, want)
	}
}

// On a database without events the cut-off is 0: the views cover every
// event and there is nothing to backfill.
func TestBackfillFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.RollupCutoff(ctx)
	if err != nil || !ok || cutoff.Unix() != 0 {
		t.Fatalf("%v %v %v", cutoff, ok, err)
	}
	if err := c.InsertEvents(ctx, []event.Event{mkEvent(t, "a.example", time.Now().AddDate(0, -1, 0).UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	res, err := c.BackfillRollups(ctx)
	if err != nil || res.Checked != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	for range 100 {
		if got, want := rollupTotals(t, c); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, want := rollupTotals(t, c)
	t.Fatalf("%s\nevents say %s", got, want)
}

// historyDB is a database at step 7 with n events over the two months
// before its cut-off, which has passed: all of them are the backfill's.
func historyDB(t *testing.T, n int) *Client {
	t.Helper()
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.migrate(ctx, Migrations[:5], "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var evs []event.Event
	for i := range n {
		e := mkEvent(t, "old.example", now.AddDate(0, -2, 0).Add(time.Duration(i)*(60*24*time.Hour/time.Duration(n))).UnixMilli())
		e.VisitorID = uint64(i%11) + 1
		evs = append(evs, e)
	}
	if err := c.insertAsStored(ctx, evs); err != nil {
		t.Fatal(err)
	}
	defer func(m time.Duration) { CutoffMargin = m }(CutoffMargin)
	CutoffMargin = time.Second
	if _, err := c.MigrateTo(ctx, VersionBotDims-1); err != nil {
		t.Fatal(err)
	}
	cutoff, _, err := c.RollupCutoff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cutoff))
	return c
}

// Two backfills at once, with no lease to keep one out, each swap in
// complete months: no month is doubled, none is left short.
func TestBackfillTwoAtOnce(t *testing.T) {
	c := historyDB(t, 3000)
	c2, err := New(chURL, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx := context.Background()
	errs := make(chan error, 2)
	var rebuilt [2]int
	for i, cc := range []*Client{c, c2} {
		go func() {
			res, err := cc.BackfillRollups(ctx)
			rebuilt[i] = len(res.Rebuilt)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			// The other run dropped this one's staging table: it
			// stops without swapping anything.
			t.Logf("one run failed: %v", err)
		}
	}
	if rebuilt[0]+rebuilt[1] == 0 {
		t.Fatal("neither run rebuilt anything")
	}
	got, want := rollupTotals(t, c)
	if got != want {
		// A run that read the events first may leave a month short of
		// late events, never long; none arrived here.
		t.Fatalf("after two runs at once (rebuilt %v): %s\nevents say %s", rebuilt, got, want)
	}
	if res, err := c.BackfillRollups(ctx); err != nil || len(res.Rebuilt) != 0 {
		t.Fatalf("third run: %+v %v", res, err)
	}
	if n := c.count(t, "SELECT count() FROM system.tables WHERE database = '"+c.db+"' AND position(name, '"+StagingInfix+"') > 0"); n != "0" {
		t.Fatalf("%s staging tables left", n)
	}
}

// Two REPLACE PARTITIONs of one partition at once can leave both
// sources' parts in it (it happened to TestBackfillTwoAtOnce in CI:
// rollup_visits 3050 of 3000). Here the other run's parts are put back
// after the first swap of each month, as that race leaves them: the run
// finds the month over what it staged and swaps it again, so nothing is
// doubled.
func TestBackfillSwapsAgainWhenDoubled(t *testing.T) {
	c := historyDB(t, 3000)
	ctx := context.Background()
	again := 0
	afterSwap = func(cc *Client, table, staging string, m uint64, try int) {
		if try > 1 {
			again++
			return
		}
		if err := cc.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s WHERE toYYYYMM(t) = %d", cc.db, table, cc.db, staging, m)); err != nil {
			t.Errorf("doubling %s month %d: %v", table, m, err)
		}
	}
	defer func() { afterSwap = nil }()
	res, err := c.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	if again != len(res.Rebuilt) {
		t.Errorf("%d months swapped again, of %d doubled", again, len(res.Rebuilt))
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the doubled swaps: %s\nevents say %s", got, want)
	}
}

// A run that stalls after staging a month, while another run does the
// whole backfill, then wakes up (a process paused past its lease): its
// staging table is gone, so it fails before it swaps anything in, and
// nothing is doubled.
func TestBackfillStalledRunFails(t *testing.T) {
	c := historyDB(t, 2000)
	c2, err := New(chURL, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx := context.Background()
	staged, wake := make(chan struct{}), make(chan struct{})
	var once bool
	afterStage = func(cc *Client, table string, m uint64) {
		if cc == c && !once {
			once = true
			close(staged)
			<-wake
		}
	}
	defer func() { afterStage = nil }()
	stalled := make(chan error, 1)
	go func() {
		_, err := c.BackfillRollups(ctx)
		stalled <- err
	}()
	<-staged
	res, err := c2.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("the other run: %+v %v", res, err)
	}
	got, want := rollupTotals(t, c)
	if got != want {
		t.Fatalf("after the other run: %s\nevents say %s", got, want)
	}
	close(wake)
	if err := <-stalled; err == nil {
		t.Fatal("the stalled run went on after its staging table was dropped")
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the stalled run woke up: %s\nevents say %s", got, want)
	}
}

// Two aggregators' backfill runners that share Redis: the lease lets one
// of them run, and when its holder is cut off from Redis mid-way (as if
// it died), the other takes over and finishes; the rollups end up with
// every event before the cut-off exactly once.
func TestBackfillLease(t *testing.T) {
	if _, ok := localsrv.RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs, err := localsrv.StartRedis(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	c := historyDB(t, 3000)
	c2, err := New(chURL, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	defer func(d time.Duration) { VisitHoursEvery = d }(VisitHoursEvery)
	VisitHoursEvery = 100 * time.Millisecond

	var mu sync.Mutex
	staged := map[*Client]int{}
	var cutOff func()
	afterStage = func(cc *Client, table string, m uint64) {
		mu.Lock()
		staged[cc]++
		f := cutOff
		cutOff = nil
		mu.Unlock()
		if f != nil {
			f() // mid-backfill: the holder loses Redis
		}
	}
	defer func() { afterStage = nil }()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ttl := 2 * time.Second
	rcs := make([]*redis.Client, 2)
	leases := make([]*lease.Lease, 2)
	done := make(chan struct{}, 2)
	for i, cc := range []*Client{c, c2} {
		rcs[i] = redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
		l := lease.New(rcs[i], "ep:lease:rollups:"+c.db, ttl)
		leases[i] = l
		go func() {
			defer func() { done <- struct{}{} }()
			l.Run(ctx, log, func(ctx context.Context) { RunBackfill(ctx, cc, 0, 100*time.Millisecond, log) })
		}()
	}
	settled := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			got, want := rollupTotals(t, c)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rollups never caught up: %s\nevents say %s", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	settled()
	// The runners keep running: let the other try the lease a few times.
	time.Sleep(2 * ttl)
	mu.Lock()
	first := staged
	staged = map[*Client]int{}
	mu.Unlock()
	if len(first) != 1 {
		t.Fatalf("both runners backfilled: %v", first)
	}
	var holder, other int
	for cc := range first {
		if cc == c2 {
			holder, other = 1, 0
		} else {
			holder, other = 0, 1
		}
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the lease's holder backfilled and both kept running: %s\nevents say %s", got, want)
	}

	// Late events before the cut-off in every month; the holder starts
	// rebuilding them, is cut off from Redis after its first staged
	// month and stalls there until the other runner has taken the lease
	// over (a process paused past its lease), then goes on.
	mu.Lock()
	cutOff = func() {
		rcs[holder].Close()
		watch := redis.NewClient(&redis.Options{Addr: rs.Addr})
		defer watch.Close()
		for watch.Get(ctx, "ep:lease:rollups:"+c.db).Val() != leases[other].Token() {
			time.Sleep(20 * time.Millisecond)
		}
	}
	mu.Unlock()
	var late []event.Event
	for i := range 10 {
		e := mkEvent(t, "old.example", time.Now().AddDate(0, -2+i%2, -1).UnixMilli())
		e.VisitorID = 99
		late = append(late, e)
	}
	if err := c.InsertEvents(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	settled()
	mu.Lock()
	second := staged
	mu.Unlock()
	cc := []*Client{c, c2}
	if second[cc[holder]] == 0 || second[cc[other]] == 0 {
		t.Fatalf("staged months by runner after the late events: %v (holder %d)", second, holder)
	}
	cancel()
	<-done
	<-done
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("at the end: %s\nevents say %s", got, want)
	}
}
