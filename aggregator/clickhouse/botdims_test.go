package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Retention removed some of a month's events before step VersionBotDims:
// its backfill copies that month from DimTable (verdict unknown) rather
// than roll up what is left of it, so that the new pair still holds every
// event the hourly rollup counts and answers questions with bots over it;
// a question without bots over that month is not answered from the pair.
// A second run changes nothing.
func TestBackfillBotDimsAfterRetention(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, VersionBotDims-1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	history := now.AddDate(0, -2, 0)
	if err := c.InsertEvents(ctx, historyEvents(t, 400, history, 3*time.Hour+7*time.Minute)); err != nil {
		t.Fatal(err)
	}
	trimmed := history.AddDate(0, 0, 10)
	if dropped, err := c.DropPartitionsBefore(ctx, trimmed); err != nil || len(dropped) == 0 {
		t.Fatalf("retention: %v %v", dropped, err)
	}
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := c.BackfillBotDims(ctx)
	if err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("%+v %v", res, err)
	}
	// Per month, the events of each new table against the hourly rollup's.
	perMonth := func(table, cond string) string {
		return c.count(t, fmt.Sprintf("SELECT toYYYYMM(t) AS m, sumMerge(events) FROM %s.%s WHERE site = 'old.example'%s GROUP BY m ORDER BY m", c.db, table, cond))
	}
	check := func(when string) {
		t.Helper()
		want := perMonth(Grains[1].Table, "")
		for _, table := range []string{BotDimHoursTable, BotDimDaysTable} {
			if got := perMonth(table, " AND dim = 'event'"); got != want {
				t.Fatalf("%s: %s by month:\n%s\n%s:\n%s", when, table, got, Grains[1].Table, want)
			}
		}
	}
	check("after the backfill")
	if got := c.count(t, fmt.Sprintf("SELECT uniqExact(toYYYYMM(t)) FROM %s.%s WHERE bot = %d", c.db, BotDimHoursTable, BotUnknown)); got != "1" {
		t.Fatalf("%s months of unknown verdict, want the trimmed one", got)
	}
	pair := func(from time.Time, excludeBots bool) (DimRollups, bool) {
		t.Helper()
		bot, err := BotDimsExist(ctx, c, c.db)
		if err != nil {
			t.Fatal(err)
		}
		d, ok, err := DimRollupsFor(ctx, c, c.db, "old.example", from.Truncate(time.Hour), now.Truncate(time.Hour), excludeBots, bot)
		if err != nil {
			t.Fatal(err)
		}
		return d, ok
	}
	if d, ok := pair(history, false); !ok || d != BotDimRollups {
		t.Errorf("with bots over the trimmed month: %v %v, want %v", d, ok, BotDimRollups)
	}
	if d, ok := pair(history, true); ok {
		t.Errorf("without bots over the trimmed month: %v, want none", d)
	}
	nextMonth := time.Date(trimmed.Year(), trimmed.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	if d, ok := pair(nextMonth, true); !ok || d != BotDimRollups {
		t.Errorf("without bots after the trimmed month: %v %v, want %v", d, ok, BotDimRollups)
	}
	res, err = c.BackfillBotDims(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	check("after a second run")
}
