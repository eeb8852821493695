package pop

// handleTable maps the u32 handles guests see to host objects. One table
// per instance, touched only by that instance's goroutine, so it needs no
// lock. A single table for all handle kinds lets every lookup check the
// kind: a body handle passed where a request handle is expected is $badf,
// as on Fastly.
//
// Handle 0 is never issued (a zero-initialised guest variable is not a
// valid handle), and neither is invalidHandle.
type handleTable struct {
	slots []slot
	free_ []uint32
}

type slot struct {
	obj any
	// gen is the downstream request generation the handle was created in;
	// request-scoped handles of old generations are swept (see sweep).
	gen uint32
	// sticky handles (log endpoints, stores, secrets) live as long as the
	// instance: guests open them once and keep them across requests.
	sticky bool
}

func (t *handleTable) add(obj any, gen uint32, sticky bool) uint32 {
	if n := len(t.free_); n > 0 {
		h := t.free_[n-1]
		t.free_ = t.free_[:n-1]
		t.slots[h] = slot{obj: obj, gen: gen, sticky: sticky}
		return h
	}
	if len(t.slots) == 0 {
		t.slots = append(t.slots, slot{}) // reserve handle 0
	}
	t.slots = append(t.slots, slot{obj: obj, gen: gen, sticky: sticky})
	return uint32(len(t.slots) - 1)
}

func (t *handleTable) get(h uint32) any {
	if h == 0 || int64(h) >= int64(len(t.slots)) {
		return nil
	}
	return t.slots[h].obj
}

// free releases h. Releasing an unknown handle is a no-op.
func (t *handleTable) free(h uint32) {
	if h == 0 || int64(h) >= int64(len(t.slots)) || t.slots[h].obj == nil {
		return
	}
	t.slots[h] = slot{}
	t.free_ = append(t.free_, h)
}

func (t *handleTable) len() int { return len(t.slots) - len(t.free_) }

// lookup returns the object behind h if it has type T.
func lookup[T any](t *handleTable, h uint32) (T, bool) {
	v, ok := t.get(h).(T)
	return v, ok
}

// take is lookup followed by free: for hostcalls that consume a handle.
func take[T any](t *handleTable, h uint32) (T, bool) {
	v, ok := t.get(h).(T)
	if ok {
		t.free(h)
	}
	return v, ok
}

// Sweep ages, in downstream-request generations. Guests rarely close the
// request, response and body handles they are done with (fsthttp never
// closes the client request or backend responses), so without sweeping a
// long-lived ServeMany instance would grow without bound. Handles survive
// the request after the one that created them, which covers background
// work that spills into the next request; in-flight backend requests and
// streaming bodies get longer.
const (
	sweepAge         = 2
	sweepAgeInFlight = 16
)

// sweep releases request-scoped handles older than the sweep ages,
// calling release on each released object.
func (t *handleTable) sweep(gen uint32, release func(any)) {
	for i := 1; i < len(t.slots); i++ {
		s := &t.slots[i]
		if s.obj == nil || s.sticky {
			continue
		}
		age := gen - s.gen
		limit := uint32(sweepAge)
		if inFlight(s.obj) {
			limit = sweepAgeInFlight
		}
		if age >= limit {
			obj := s.obj
			t.free(uint32(i))
			release(obj)
		}
	}
}

// all calls f for every live object (used when an instance ends).
func (t *handleTable) all(f func(any)) {
	for i := 1; i < len(t.slots); i++ {
		if o := t.slots[i].obj; o != nil {
			f(o)
		}
	}
}

func inFlight(o any) bool {
	switch o := o.(type) {
	case *pendingReq:
		return true
	case *body:
		return o.streaming
	}
	return false
}
