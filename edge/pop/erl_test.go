package pop

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the ERL store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newTestERL(max int) (*erlStore, *fakeClock) {
	// A whole minute (and so a whole 10-second bucket) plus 0.25 s.
	clk := &fakeClock{t: time.Unix(1_700_000_040, 250_000_000)}
	e := newERLStore(max)
	e.now = clk.now
	return e, clk
}

var (
	rcName = []byte("rc")
	pbName = []byte("pb")
)

func TestERLRates(t *testing.T) {
	e, clk := newTestERL(0)
	k := []byte("client")
	// 20 increments in second 0 (at 0.25 s).
	e.Increment(rcName, k, 20)
	if got := e.Rate(rcName, k, 1); got != 20 {
		t.Errorf("1s rate in the same second: %d, want 20", got)
	}
	if got := e.Rate(rcName, k, 10); got != 2 {
		t.Errorf("10s rate: %d, want 2", got)
	}
	if got := e.Count(rcName, k, 10); got != 20 {
		t.Errorf("10s count: %d, want 20", got)
	}
	// Half a second into the next second, half of the last second still
	// falls in the 1s window.
	clk.add(1250 * time.Millisecond) // 1.5 s
	if got := e.Rate(rcName, k, 1); got != 10 {
		t.Errorf("1s rate half a second later: %d, want 10", got)
	}
	clk.add(time.Second) // 2.5 s: second 0 has left the 1s window
	if got := e.Rate(rcName, k, 1); got != 0 {
		t.Errorf("1s rate two seconds later: %d, want 0", got)
	}
	if got := e.Rate(rcName, k, 10); got != 2 {
		t.Errorf("10s rate two seconds later: %d, want 2", got)
	}
	// 10.5 s: second 0 is half out of the 10s window.
	clk.add(8 * time.Second)
	if got := e.Rate(rcName, k, 10); got != 1 {
		t.Errorf("10s rate at 10.5 s: %d, want 1", got)
	}
	// The 10s count is of the current clock-aligned bucket: empty now.
	if got := e.Count(rcName, k, 10); got != 0 {
		t.Errorf("10s count in the next bucket: %d, want 0", got)
	}
	if got := e.Count(rcName, k, 20); got != 20 {
		t.Errorf("20s count: %d, want 20", got)
	}
	// The 60s rate counts it until it is half a bucket out of the minute.
	if got := e.Rate(rcName, k, 60); got != 0 { // 20/60
		t.Errorf("60s rate: %d, want 0 (20 in 60 s)", got)
	}
	e.Increment(rcName, k, 1000)
	if got := e.Rate(rcName, k, 60); got != 17 { // 1020/60
		t.Errorf("60s rate: %d, want 17", got)
	}
	if got := e.Count(rcName, k, 60); got != 1020 {
		t.Errorf("60s count: %d, want 1020", got)
	}
	clk.add(55 * time.Second) // 65.5 s: the first 20 are out of the minute
	if got := e.Count(rcName, k, 60); got != 1000 {
		t.Errorf("60s count at 65.5 s: %d, want 1000", got)
	}
	// 75.5 s: the minute reaches back to 15.5 s, 4.5 s into the bucket of
	// the 1000, which counts for 4.5/10 of it: 450 in 60 s.
	clk.add(10 * time.Second)
	if got := e.Rate(rcName, k, 60); got != 7 {
		t.Errorf("60s rate at 75.5 s: %d, want 7", got)
	}
	clk.add(time.Hour)
	if got := e.Count(rcName, k, 60); got != 0 {
		t.Errorf("count an hour later: %d", got)
	}
	// Every access drops the expired entries.
	if c, _ := e.sizes(); c != 0 {
		t.Errorf("entries: %d, want the expired one dropped", c)
	}
	e.Increment(rcName, []byte("other"), 1)
	if c, _ := e.sizes(); c != 1 {
		t.Errorf("entries after an increment: %d, want 1", c)
	}
	// Counters and entries are apart: another counter, same entry.
	if got := e.Rate([]byte("rc2"), []byte("other"), 1); got != 0 {
		t.Errorf("another counter sees %d", got)
	}
	// A name and entry that concatenate alike are still apart.
	e.Increment([]byte("ab"), []byte("c"), 5)
	if got := e.Count([]byte("a"), []byte("bc"), 10); got != 0 {
		t.Errorf("(a, bc) sees (ab, c): %d", got)
	}
}

func TestERLPenaltyBox(t *testing.T) {
	e, clk := newTestERL(0)
	k := []byte("bad")
	if e.PenaltyHas(pbName, k) {
		t.Fatal("empty box has an entry")
	}
	e.PenaltyAdd(pbName, k, 2*time.Minute)
	if !e.PenaltyHas(pbName, k) || e.PenaltyHas([]byte("other box"), k) {
		t.Fatal("added entry not in its box only")
	}
	clk.add(119 * time.Second)
	if !e.PenaltyHas(pbName, k) {
		t.Fatal("gone before its TTL")
	}
	// Adding again replaces the TTL.
	e.PenaltyAdd(pbName, k, time.Minute)
	clk.add(59 * time.Second)
	if !e.PenaltyHas(pbName, k) {
		t.Fatal("gone before its new TTL")
	}
	clk.add(time.Second)
	if e.PenaltyHas(pbName, k) {
		t.Fatal("still there after its TTL")
	}
}

func TestERLPenaltyTTL(t *testing.T) {
	for _, tc := range []struct {
		seconds uint32
		want    time.Duration
		ok      bool
	}{
		{0, 0, false}, {59, 0, false}, {60, time.Minute, true}, {119, time.Minute, true},
		{3600, time.Hour, true}, {3659, time.Hour, true}, {3660, 0, false}, {^uint32(0), 0, false},
	} {
		got, ok := penaltyTTL(tc.seconds)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("penaltyTTL(%d) = %v, %v; want %v, %v", tc.seconds, got, ok, tc.want, tc.ok)
		}
	}
}

func TestERLCheckRate(t *testing.T) {
	e, clk := newTestERL(0)
	k := []byte("client")
	for i := range 10 {
		if e.CheckRate(rcName, k, 1, 1, 10, pbName, time.Minute) {
			t.Fatalf("blocked at increment %d of 10 with a limit of 10/s", i+1)
		}
	}
	if !e.CheckRate(rcName, k, 1, 1, 10, pbName, time.Minute) {
		t.Fatal("not blocked at 11/s with a limit of 10/s")
	}
	if !e.PenaltyHas(pbName, k) {
		t.Fatal("not put in the penalty box")
	}
	// In the box, it stays blocked however slow it gets, until the TTL.
	clk.add(30 * time.Second)
	if !e.CheckRate(rcName, k, 0, 1, 10, pbName, time.Minute) {
		t.Fatal("not blocked while in the penalty box")
	}
	clk.add(31 * time.Second)
	if e.CheckRate(rcName, k, 1, 1, 10, pbName, time.Minute) {
		t.Fatal("still blocked after the TTL at 1/s")
	}
	if e.PenaltyHas(pbName, []byte("someone else")) {
		t.Fatal("another entry penalised")
	}
}

func TestERLBounded(t *testing.T) {
	e, clk := newTestERL(3)
	for i := range 5 {
		e.Increment(rcName, fmt.Appendf(nil, "k%d", i), 1)
		clk.add(time.Millisecond)
	}
	if c, _ := e.sizes(); c != 3 {
		t.Fatalf("%d counter entries, want 3", c)
	}
	if got := e.counterEvictions.Load(); got != 2 {
		t.Errorf("%d evictions, want 2", got)
	}
	// The least recently incremented went first: k0 and k1.
	for i, want := range []uint32{0, 0, 1, 1, 1} {
		if got := e.Count(rcName, fmt.Appendf(nil, "k%d", i), 10); got != want {
			t.Errorf("k%d: count %d, want %d", i, got, want)
		}
	}
	// Incrementing k2 makes k3 the oldest.
	e.Increment(rcName, []byte("k2"), 1)
	e.Increment(rcName, []byte("k5"), 1)
	if e.Count(rcName, []byte("k3"), 10) != 0 || e.Count(rcName, []byte("k2"), 10) != 2 {
		t.Error("eviction did not take the least recently incremented")
	}

	// Penalty boxes evict the entry closest to expiry.
	for i, ttl := range []time.Duration{5, 2, 9, 7} {
		e.PenaltyAdd(pbName, fmt.Appendf(nil, "p%d", i), ttl*time.Minute)
	}
	if _, p := e.sizes(); p != 3 {
		t.Fatalf("%d penalty entries, want 3", p)
	}
	if e.PenaltyHas(pbName, []byte("p1")) || !e.PenaltyHas(pbName, []byte("p0")) || !e.PenaltyHas(pbName, []byte("p3")) {
		t.Error("eviction did not take the entry with the shortest TTL left")
	}
	if got := e.penaltyEvictions.Load(); got != 1 {
		t.Errorf("%d penalty evictions, want 1", got)
	}
	// Expired entries leave without counting as evictions.
	clk.add(6 * time.Minute)
	e.PenaltyAdd(pbName, []byte("p4"), time.Minute)
	if _, p := e.sizes(); p != 3 || e.penaltyEvictions.Load() != 1 {
		t.Errorf("after expiry: %d entries, %d evictions; want 3, 1", p, e.penaltyEvictions.Load())
	}
}

func TestERLSaturates(t *testing.T) {
	e, _ := newTestERL(0)
	k := []byte("k")
	e.mu.Lock()
	r := e.counterLocked(erlKey(nil, rcName, k), 1_700_000_040, true)
	r.secs[1_700_000_040%11] = ^uint32(0) - 5
	r.tens[(1_700_000_040/10)%7] = ^uint32(0) - 5
	e.mu.Unlock()
	e.Increment(rcName, k, 1000)
	if got := e.Count(rcName, k, 10); got != ^uint32(0) {
		t.Errorf("count %d, want saturated", got)
	}
}

// TestERLConcurrent runs every operation from many goroutines (for the
// race detector) and checks no increment is lost.
func TestERLConcurrent(t *testing.T) {
	e := newERLStore(0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				e.Increment(rcName, []byte("shared"), 1)
				e.CheckRate(rcName, fmt.Appendf(nil, "g%d", g), 1, 10, 10000, pbName, time.Minute)
				e.Rate(rcName, []byte("shared"), 60)
				e.PenaltyHas(pbName, fmt.Appendf(nil, "g%d-%d", g, i))
			}
		}()
	}
	wg.Wait()
	if got := e.Count(rcName, []byte("shared"), 60); got != 8*500 {
		t.Errorf("count %d, want %d", got, 8*500)
	}
}

// TestERLThroughGuest calls the store through compute-sdk-go's erl
// package in the storeguest: what the SDK returns, its error for each
// argument out of range, and one store shared by all instances.
func TestERLThroughGuest(t *testing.T) {
	p, _ := storePOP(t, "", nil)
	call := func(kv ...string) storeResult {
		t.Helper()
		return p.ask(t, "/erl", q(kv...), nil)
	}

	// Ten increments of 1 within a second or two never exceed 10/s.
	for i := range 10 {
		r := call("op", "check", "rc", "req", "pb", "box", "entry", "a", "delta", "1", "window", "1", "limit", "10", "ttl", "1m")
		if r.Err != "" || r.Has == nil || *r.Has {
			t.Fatalf("check %d of 10 at limit 10/s: err=%q blocked=%v", i+1, r.Err, r.Has)
		}
	}
	if r := call("op", "has", "pb", "box", "entry", "a"); r.Err != "" || *r.Has {
		t.Fatalf("in the penalty box before exceeding: %+v", r)
	}
	// 1000 more in this second do.
	if r := call("op", "check", "rc", "req", "pb", "box", "entry", "a", "delta", "1000", "window", "1", "limit", "10", "ttl", "1m"); r.Err != "" || !*r.Has {
		t.Fatalf("not blocked at over 1000/s: %+v", r)
	}
	if r := call("op", "has", "pb", "box", "entry", "a"); r.Err != "" || !*r.Has {
		t.Fatalf("not in the penalty box after exceeding: %+v", r)
	}
	if r := call("op", "has", "pb", "box", "entry", "b"); r.Err != "" || *r.Has {
		t.Fatalf("another entry is in the penalty box: %+v", r)
	}
	if r := call("op", "count", "rc", "req", "entry", "a", "duration", "60"); r.Err != "" || *r.N != 1010 {
		t.Fatalf("60s count: %+v, want 1010", r)
	}

	if r := call("op", "add", "pb", "manual", "entry", "x", "ttl", "2m"); r.Err != "" {
		t.Fatalf("penalty box add: %q", r.Err)
	}
	if r := call("op", "has", "pb", "manual", "entry", "x"); r.Err != "" || !*r.Has {
		t.Fatalf("added entry missing: %+v", r)
	}

	// Increments from many instances at once all count.
	const n = 24
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := call("op", "inc", "rc", "shared", "entry", "e", "delta", "7")
			if r.Err != "" {
				t.Errorf("increment: %q", r.Err)
			}
			mu.Lock()
			seen[r.Instance] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if r := call("op", "count", "rc", "shared", "entry", "e", "duration", "60"); r.Err != "" || *r.N != 7*n {
		t.Errorf("60s count of increments from %d instances: %+v, want %d", len(seen), r, 7*n)
	}
	if len(seen) < 2 {
		t.Errorf("only %d instance(s) answered; the test needs two to show sharing", len(seen))
	}
	if r := call("op", "rate", "rc", "shared", "entry", "e", "window", "60"); r.Err != "" || *r.N != 7*n/60 {
		t.Errorf("60s rate: %+v, want %d", r, 7*n/60)
	}
	if r := call("op", "rate", "rc", "shared", "entry", "never", "window", "10"); r.Err != "" || *r.N != 0 {
		t.Errorf("rate of an entry never counted: %+v", r)
	}

	long := strings.Repeat("x", 65)
	for _, tc := range [][]string{
		{"op", "inc", "rc", "r", "entry", "e", "delta", "1001"},
		{"op", "inc", "rc", long, "entry", "e", "delta", "1"},
		{"op", "inc", "rc", "r", "entry", long, "delta", "1"},
		{"op", "check", "rc", "r", "pb", "b", "entry", "e", "delta", "1", "window", "1", "limit", "9", "ttl", "1m"},
		{"op", "check", "rc", "r", "pb", "b", "entry", "e", "delta", "1", "window", "1", "limit", "10001", "ttl", "1m"},
		{"op", "check", "rc", "r", "pb", long, "entry", "e", "delta", "1", "window", "1", "limit", "10", "ttl", "1m"},
		{"op", "add", "pb", "b", "entry", "e", "ttl", "59s"},
		{"op", "add", "pb", "b", "entry", "e", "ttl", "61m"},
		{"op", "has", "pb", long, "entry", "e"},
	} {
		if r := call(tc...); r.Err != "erl.ErrInvalidArgument" {
			t.Errorf("%v: err %q, want erl.ErrInvalidArgument", tc, r.Err)
		}
	}
	// An invalid check_rate changes nothing.
	if r := call("op", "count", "rc", "r", "entry", "e", "duration", "10"); *r.N != 0 {
		t.Errorf("rejected calls counted: %+v", r)
	}
	if r := call("op", "inc", "rc", strings.Repeat("y", 64), "entry", strings.Repeat("z", 64), "delta", "0"); r.Err != "" {
		t.Errorf("64-byte name and entry: %q", r.Err)
	}

	_, text := p.get(t, "/erl/raw")
	var raw map[string]uint32
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	for k, want := range map[string]uint32{
		"rate_window_5": stInval, "rate_window_60": stOK, "count_duration_15": stInval,
		"count_duration_70": stInval, "check_window_0": stInval, "rate_bad_pointer": stInval, "rate_bad_out": stInval,
	} {
		if raw[k] != want {
			t.Errorf("%s: status %d, want %d", k, raw[k], want)
		}
	}

	var metrics strings.Builder
	p.WritePrometheus(&metrics)
	if !strings.Contains(metrics.String(), `edgepixel_pop_erl_entries{table="penaltybox"} 2`) {
		t.Errorf("metrics lack the penalty box entries:\n%s", grepLines(metrics.String(), "erl"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
