package pop

// fastly_erl: Edge Rate Limiting, rate counters and penalty boxes held in
// memory, bounded, and shared by all instances (erl.go says how rates and
// counts are computed and what is evicted). Names of counters and boxes
// are not declared anywhere: like Fastly's, one exists once it is used.
var fastlyERL = hostModule{name: "fastly_erl", funcs: []hostFunc{
	{"check_rate", i32("rc_ptr", "rc_len", "entry_ptr", "entry_len", "delta", "window", "limit", "pb_ptr", "pb_len", "ttl", "blocked_out"), erlCheckRate},
	{"ratecounter_increment", i32("rc_ptr", "rc_len", "entry_ptr", "entry_len", "delta"), erlIncrement},
	{"ratecounter_lookup_rate", i32("rc_ptr", "rc_len", "entry_ptr", "entry_len", "window", "rate_out"), erlLookupRate},
	{"ratecounter_lookup_count", i32("rc_ptr", "rc_len", "entry_ptr", "entry_len", "duration", "count_out"), erlLookupCount},
	{"penaltybox_add", i32("pb_ptr", "pb_len", "entry_ptr", "entry_len", "ttl"), erlPenaltyAdd},
	{"penaltybox_has", i32("pb_ptr", "pb_len", "entry_ptr", "entry_len", "has_out"), erlPenaltyHas},
}}

// erlArgs reads the (name, entry) string pairs at stack positions i and
// i+2. They alias guest memory, which is fine for the duration of the
// call: the store copies what it keeps.
func erlArgs(c *call, i int) (name, entry []byte, st status) {
	name, ok := c.argBytes(i)
	if !ok {
		return nil, nil, stInval
	}
	entry, ok = c.argBytes(i + 2)
	if !ok {
		return nil, nil, stInval
	}
	if len(name) > erlMaxName || len(entry) > erlMaxName {
		return nil, nil, stInval
	}
	return name, entry, stOK
}

// erlCheckRate implements fastly_erl.check_rate(rc_ptr, rc_len, entry_ptr,
// entry_len, delta, window, limit, pb_ptr, pb_len, ttl, blocked_out):
// increments entry in rate counter rc by delta and writes 1 to
// blocked_out if entry is in penalty box pb, or if its rate over window
// (1, 10 or 60 seconds) now exceeds limit (increments per second), in
// which case it is added to pb for ttl seconds (truncated to whole
// minutes); else 0. It is one atomic step across all instances.
//
// Status: $ok; $inval for a name or entry over 64 bytes, delta over 1000,
// another window, limit outside 10 to 10000, or ttl outside 1 to 60
// minutes, with nothing counted.
//
// Differs: the argument ranges are those compute-sdk-go's erl package
// documents (Fastly's VCL allows longer entries and higher limits); rates
// are exact at the moment of the call, where Fastly's lag a few seconds
// and may under-count by up to 10%. Older Viceroy releases answer every
// fastly_erl call as if nothing were ever counted.
func erlCheckRate(c *call) status {
	rc, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	delta, window, limit := c.u32(4), c.u32(5), c.u32(6)
	pb, ok := c.argBytes(7)
	if !ok || len(pb) > erlMaxName {
		return stInval
	}
	ttl, ok := penaltyTTL(c.u32(9))
	if !ok || delta > erlMaxDelta || !validWindow(window) || limit < erlMinLimit || limit > erlMaxLimit {
		return stInval
	}
	var blocked uint32
	if c.inst.s.erl.CheckRate(rc, entry, delta, window, limit, pb, ttl) {
		blocked = 1
	}
	return c.putU32Status(c.u32(10), blocked)
}

// erlIncrement implements fastly_erl.ratecounter_increment(rc_ptr, rc_len,
// entry_ptr, entry_len, delta): adds delta to entry in rate counter rc.
//
// Status: $ok; $inval for a name or entry over 64 bytes or delta over
// 1000.
//
// Differs: as for check_rate.
func erlIncrement(c *call) status {
	rc, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	delta := c.u32(4)
	if delta > erlMaxDelta {
		return stInval
	}
	c.inst.s.erl.Increment(rc, entry, delta)
	return stOK
}

// erlLookupRate implements fastly_erl.ratecounter_lookup_rate(rc_ptr,
// rc_len, entry_ptr, entry_len, window, rate_out): entry's increments
// per second in rate counter rc over the window (1, 10 or 60 seconds),
// rounded down; 0 for an entry never incremented.
//
// Status: $ok; $inval for a name or entry over 64 bytes or another
// window.
//
// Differs: as for check_rate.
func erlLookupRate(c *call) status {
	rc, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	window := c.u32(4)
	if !validWindow(window) {
		return stInval
	}
	return c.putU32Status(c.u32(5), c.inst.s.erl.Rate(rc, entry, window))
}

// erlLookupCount implements fastly_erl.ratecounter_lookup_count(rc_ptr,
// rc_len, entry_ptr, entry_len, duration, count_out): entry's increments
// in rate counter rc over duration (10 to 60 seconds in steps of 10),
// counted in 10-second buckets aligned to the clock: the current, partial
// bucket and the ones before it.
//
// Status: $ok; $inval for a name or entry over 64 bytes or another
// duration.
//
// Differs: as for check_rate; counts are exact, Fastly's estimated.
func erlLookupCount(c *call) status {
	rc, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	duration := c.u32(4)
	if !validDuration(duration) {
		return stInval
	}
	return c.putU32Status(c.u32(5), c.inst.s.erl.Count(rc, entry, duration))
}

// erlPenaltyAdd implements fastly_erl.penaltybox_add(pb_ptr, pb_len,
// entry_ptr, entry_len, ttl): puts entry in penalty box pb for ttl
// seconds, truncated to whole minutes, replacing the TTL of an entry
// already there.
//
// Status: $ok; $inval for a name or entry over 64 bytes or a ttl outside
// 1 to 60 minutes.
//
// Differs: as for check_rate.
func erlPenaltyAdd(c *call) status {
	pb, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	ttl, ok := penaltyTTL(c.u32(4))
	if !ok {
		return stInval
	}
	c.inst.s.erl.PenaltyAdd(pb, entry, ttl)
	return stOK
}

// erlPenaltyHas implements fastly_erl.penaltybox_has(pb_ptr, pb_len,
// entry_ptr, entry_len, has_out): writes 1 to has_out if entry is in
// penalty box pb and its TTL has not run out, else 0.
//
// Status: $ok; $inval for a name or entry over 64 bytes.
//
// Differs: as for check_rate.
func erlPenaltyHas(c *call) status {
	pb, entry, st := erlArgs(c, 0)
	if st != stOK {
		return st
	}
	var has uint32
	if c.inst.s.erl.PenaltyHas(pb, entry) {
		has = 1
	}
	return c.putU32Status(c.u32(4), has)
}
