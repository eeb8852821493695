package main

import (
	"net/url"
	"strconv"
	"time"

	"github.com/fastly/compute-sdk-go/erl"
)

// erlCall runs one Edge Rate Limiting call through the SDK's erl package:
// op is check, inc, rate, count, add or has; rc, pb and entry name the
// counter, box and entry; delta, window (1, 10, 60), duration (10..60),
// limit and ttl (a Go duration) are its arguments. A count or rate goes
// to n, a penalised or present entry to has.
func erlCall(res *result, q url.Values) {
	num := func(k string) uint32 {
		n, _ := strconv.ParseUint(q.Get(k), 10, 32)
		return uint32(n)
	}
	ttl, _ := time.ParseDuration(q.Get("ttl"))
	windows := map[string]erl.RateWindow{"1": erl.RateWindow1s, "10": erl.RateWindow10s, "60": erl.RateWindow60s}
	durations := map[string]erl.CounterDuration{"10": erl.CounterDuration10s, "20": erl.CounterDuration20s,
		"30": erl.CounterDuration30s, "40": erl.CounterDuration40s, "50": erl.CounterDuration50s, "60": erl.CounterDuration60s}
	rc, pb, entry := erl.OpenRateCounter(q.Get("rc")), erl.OpenPenaltyBox(q.Get("pb")), q.Get("entry")
	var (
		n   uint32
		b   bool
		err error
	)
	switch q.Get("op") {
	case "check":
		b, err = erl.NewRateLimiter(rc, pb).CheckRate(entry, num("delta"), &erl.Policy{
			RateWindow: windows[q.Get("window")], MaxRate: num("limit"), PenaltyBoxDuration: ttl})
		res.Has = &b
	case "inc":
		err = rc.Increment(entry, num("delta"))
	case "rate":
		n, err = rc.LookupRate(entry, windows[q.Get("window")])
		res.N = &n
	case "count":
		n, err = rc.LookupCount(entry, durations[q.Get("duration")])
		res.N = &n
	case "add":
		err = pb.Add(entry, ttl)
	case "has":
		b, err = pb.Has(entry)
		res.Has = &b
	}
	res.Err = errName(err)
}

//go:wasmimport fastly_erl ratecounter_lookup_rate
func rawERLLookupRate(rc, rcLen, entry, entryLen, window, out uint32) uint32

//go:wasmimport fastly_erl ratecounter_lookup_count
func rawERLLookupCount(rc, rcLen, entry, entryLen, duration, out uint32) uint32

//go:wasmimport fastly_erl check_rate
func rawERLCheckRate(rc, rcLen, entry, entryLen, delta, window, limit, pb, pbLen, ttl, out uint32) uint32

// rawERLChecks passes the arguments the SDK's types cannot express (a
// window or duration that is none of Fastly's) and bad pointers; the
// host must answer $inval (2).
func rawERLChecks() map[string]uint32 {
	out := map[string]uint32{}
	var n uint32
	rc, rcLen := strPtr("rc")
	e, eLen := strPtr("entry")
	pb, pbLen := strPtr("pb")
	out["rate_window_5"] = rawERLLookupRate(rc, rcLen, e, eLen, 5, ptr(&n))
	out["rate_window_60"] = rawERLLookupRate(rc, rcLen, e, eLen, 60, ptr(&n))
	out["count_duration_15"] = rawERLLookupCount(rc, rcLen, e, eLen, 15, ptr(&n))
	out["count_duration_70"] = rawERLLookupCount(rc, rcLen, e, eLen, 70, ptr(&n))
	out["check_window_0"] = rawERLCheckRate(rc, rcLen, e, eLen, 1, 0, 100, pb, pbLen, 60, ptr(&n))
	out["rate_bad_pointer"] = rawERLLookupRate(0xFFFF_FFF0, 64, e, eLen, 1, ptr(&n))
	out["rate_bad_out"] = rawERLLookupRate(rc, rcLen, e, eLen, 1, 0xFFFF_FFFF)
	return out
}
