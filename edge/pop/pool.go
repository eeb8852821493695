package pop

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// The pool: each program (module version, reload.go) has a dispatch that
// matches client requests with its idle instances (waiting in
// body_downstream_get or next_request_wait). A request goes to the most
// recently idle instance: a ServeMany guest that just answered gets the
// next request, as a Viceroy or Fastly sandbox is reused, with its caches
// warm, and instances above the warm size really sit idle under light
// load. A request that finds no idle instance waits in line, oldest
// first. The lock is held only to push or pop, never while a guest runs.
// When no instance is idle the pool grows, one instance at a time, up to
// MaxInstances; an instance that ends (its _start returned, or it trapped)
// is replaced while the pool is below its warm size. Instances above the
// warm size that sit idle for IdleTimeout are told there are no more
// requests, so the pool follows the load back down and the guests exit
// cleanly (running the code after their serve loop).

// defaultIdleTimeout is how long an instance above the warm size may sit
// idle before it is told to end (Config.IdleTimeout).
const defaultIdleTimeout = 5 * time.Second

// dispatch is one program's meeting point of requests and idle instances.
type dispatch struct {
	mu    sync.Mutex
	idle  []*instance   // waiting for a request; the most recently idle last
	queue []*downstream // waiting for an instance; the oldest first
}

// offer hands ds to the most recently idle instance, or queues it and
// reports false. A queued request gets its taken channel, closed when an
// instance takes it.
func (d *dispatch) offer(ds *downstream) bool {
	d.mu.Lock()
	if n := len(d.idle); n > 0 {
		inst := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		inst.inbox <- ds // room for one, and only the popper sends
		return true
	}
	if ds.taken == nil {
		ds.taken = make(chan struct{})
	}
	d.queue = append(d.queue, ds)
	d.mu.Unlock()
	return false
}

// withdraw takes a queued ds back; false if an instance took it already.
func (d *dispatch) withdraw(ds *downstream) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, q := range d.queue {
		if q == ds {
			d.queue = append(d.queue[:i], d.queue[i+1:]...)
			return true
		}
	}
	return false
}

// take gives inst the oldest queued request, or makes it idle and
// returns nil: it then receives its request on inst.inbox.
func (d *dispatch) take(inst *instance) *downstream {
	d.mu.Lock()
	if len(d.queue) > 0 {
		ds := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.mu.Unlock()
		close(ds.taken)
		return ds
	}
	d.idle = append(d.idle, inst)
	d.mu.Unlock()
	return nil
}

// leave takes an idle inst out of the idle list; false if a request was
// handed to it meanwhile (it is in, or about to be in, inst.inbox).
func (d *dispatch) leave(inst *instance) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, x := range d.idle {
		if x == inst {
			d.idle = append(d.idle[:i], d.idle[i+1:]...)
			return true
		}
	}
	return false
}

// rejoin puts an instance that stays idle back where it was: the least
// recently idle end.
func (d *dispatch) rejoin(inst *instance) {
	d.mu.Lock()
	d.idle = append([]*instance{inst}, d.idle...)
	d.mu.Unlock()
}

// spawn starts one instance of p on its own goroutine. It reports false if
// the server is shutting down or p was retired.
func (s *Server) spawn(p *program) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.isClosing() || p.isRetired() {
		return false
	}
	s.live.Add(1)
	p.live.Add(1)
	p.starting.Add(1)
	s.m.started.Add(1)
	s.wg.Add(1)
	inst := newInstance(s, p, s.instID.Add(1))
	go s.runInstance(inst)
	return true
}

func (s *Server) runInstance(inst *instance) {
	defer s.wg.Done()
	p := inst.prog
	began := time.Now()
	err := inst.run()
	failedEarly := inst.served == 0 && inst.starting
	inst.finish(err)
	if inst.retiring {
		p.retiring.Add(-1)
	}
	s.live.Add(-1)
	plive := p.live.Add(-1)
	if !cleanExit(err) {
		s.m.crashed.Add(1)
		s.log.Warn("guest instance failed", "instance", inst.id, "served", inst.served, "err", err)
	} else {
		s.log.Debug("guest instance ended", "instance", inst.id, "served", inst.served, "lifetime", time.Since(began))
	}
	current := s.cur.Load() == p
	if failedEarly {
		// It ended before ever waiting for a request. Reported to whoever
		// waits for the program's warm pool (New, Reload); a broken module
		// would respawn in a tight loop, so back off.
		startErr := instanceStartError(err)
		if k := inst.breachKind(); k != limitNone {
			startErr = fmt.Errorf("exceeded its %s limit while starting: %w", k, startErr)
		}
		select {
		case p.startFailed <- startErr:
		default:
		}
		if current {
			s.startFailed(p, startErr) // health.go
			s.backoff()
		}
	} else {
		s.resetBackoff()
	}
	if p.isRetired() {
		if plive == 0 {
			s.release(p)
		}
		return
	}
	// Only the current program is kept at its warm size; a program still
	// warming up for a reload is not (its failure aborts the reload).
	if current && int(p.live.Load()-p.retiring.Load()) < s.minInstances {
		s.spawn(p)
	}
}

func instanceStartError(err error) error {
	if err == nil || cleanExit(err) {
		return errors.New("guest exited before reading its first request")
	}
	return err
}

func (s *Server) backoff() {
	s.spawnMu.Lock()
	d := s.failDelay
	if d == 0 {
		d = 50 * time.Millisecond
	} else {
		d = min(d*2, 5*time.Second)
	}
	s.failDelay = d
	s.spawnMu.Unlock()
	select {
	case <-time.After(d):
	case <-s.closing:
	}
}

func (s *Server) resetBackoff() {
	s.spawnMu.Lock()
	s.failDelay = 0
	s.spawnMu.Unlock()
}

// grow starts one more instance of p if all are busy, none is already
// starting and the pool is below its maximum. Starting one at a time keeps
// a burst from paying for many instantiations (each costs milliseconds of
// CPU) when a busy instance is about to become free anyway. Instances of a
// program being drained after a reload still count against the maximum:
// they still hold memory.
func (s *Server) grow(p *program) {
	if p.starting.Load() > 0 || int(s.live.Load()) >= s.maxInstances {
		return
	}
	s.spawn(p)
}

// acquire hands ds to an idle instance of the current program, waiting for
// one if necessary.
func (s *Server) acquire(ds *downstream) bool {
	p := s.cur.Load()
	if p.d.offer(ds) {
		return true
	}
	s.grow(p)
	// Re-check growth periodically: an instance that was starting may have
	// died, or more capacity may be allowed now.
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ds.taken:
			return true
		case <-t.C:
			s.grow(p)
		case <-p.retired:
			// Hot reload: wait for the new version instead.
			if !p.d.withdraw(ds) {
				return true
			}
			p = s.cur.Load()
			if p.d.offer(ds) {
				return true
			}
			s.grow(p)
		case <-ds.r.Context().Done():
			return !p.d.withdraw(ds)
		case <-s.closing:
			return !p.d.withdraw(ds)
		}
	}
}

// tryRetire lets an idle instance above the program's warm size end. The
// compare-and-swap keeps instances that time out together from all ending
// and taking the pool below its warm size.
func (s *Server) tryRetire(inst *instance) bool {
	p := inst.prog
	for {
		r := p.retiring.Load()
		if int(p.live.Load()-r) <= s.minInstances {
			return false
		}
		if p.retiring.CompareAndSwap(r, r+1) {
			inst.retiring = true
			s.ps.idleExits.Add(1)
			return true
		}
	}
}

// waitRequest blocks until the pool hands this instance a client request.
// It reports false when the instance should take no more requests: the
// guest's timeout passed (timeout < 0: none), it sat idle above the warm
// size, it is a fresh-instance that already served its request, its
// program was replaced by a reload, it breached a limit, or the server
// shuts down.
func (inst *instance) waitRequest(timeout time.Duration) (*downstream, bool) {
	p := inst.prog
	inst.dog.end()
	if inst.segOpen {
		inst.segOpen = false
		cpu := inst.guestUsed() - inst.segStart
		answer := inst.segAnswer
		if answer < 0 {
			answer = cpu
		}
		inst.s.guest.observe(GuestSample{Instance: inst.id, CPU: cpu, Answer: answer, BackendSends: inst.segSends})
	}
	if inst.starting {
		inst.starting = false
		p.starting.Add(-1)
		inst.s.m.observeStartup(time.Since(inst.spawned))
		inst.s.startSucceeded()
	}
	if ds, ok := inst.waitWork(timeout); ok {
		inst.dog.begin(ds, inst.s.wallBudget)
		if inst.s.measureGuest {
			inst.segAnswer, inst.segSends = -1, 0
			inst.segStart, inst.segOpen = inst.guestUsed(), true
		}
		return ds, true
	}
	// What the guest runs from now on (the code after its serve loop)
	// still has a wall budget.
	inst.dog.begin(nil, inst.s.wallBudget)
	return nil, false
}

func (inst *instance) waitWork(timeout time.Duration) (*downstream, bool) {
	s, p := inst.s, inst.prog
	if (s.fresh && inst.served > 0) || inst.breachKind() != limitNone || p.isRetired() {
		return nil, false
	}
	if ds := p.d.take(inst); ds != nil {
		return ds, true
	}
	s.idle.Add(1)
	p.idle.Add(1)
	defer func() {
		s.idle.Add(-1)
		p.idle.Add(-1)
	}()
	var tc, idleC <-chan time.Time
	if timeout >= 0 {
		tc = inst.waitTimer.start(timeout)
		defer inst.waitTimer.t.Stop()
	}
	// Only an instance above the warm size can retire, so only it needs a
	// timer (the pool grows only while no instance is idle, so one that
	// starts waiting at the warm size has no reason to leave).
	if s.idleTimeout > 0 && int(p.live.Load()-p.retiring.Load()) > s.minInstances {
		idleC = inst.idleTimer.start(s.idleTimeout)
		defer inst.idleTimer.t.Stop()
	}
	for {
		select {
		case ds := <-inst.inbox:
			return ds, true
		case <-idleC:
			if !p.d.leave(inst) {
				return <-inst.inbox, true
			}
			if s.tryRetire(inst) {
				return nil, false
			}
			p.d.rejoin(inst)
			idleC = nil
			continue
		case <-tc:
		case <-p.retired:
		case <-s.closing:
		case <-inst.ctx.Done():
		}
		// Handed a request as it woke: it serves that one first (a
		// retired program or a shutdown still finish what they took).
		if !p.d.leave(inst) {
			return <-inst.inbox, true
		}
		return nil, false
	}
}

// reusedTimer is a timer an instance arms for each wait instead of making
// a new one per request. Since Go 1.23 a stopped or reset timer delivers
// no value left over from before, so reuse cannot wake a wait early.
type reusedTimer struct{ t *time.Timer }

// start arms the timer for d and returns its channel.
func (r *reusedTimer) start(d time.Duration) <-chan time.Time {
	if r.t == nil {
		r.t = time.NewTimer(d)
	} else {
		r.t.Reset(d)
	}
	return r.t.C
}
