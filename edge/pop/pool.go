package pop

import (
	"errors"
	"time"
)

// The pool: Server.work is an unbuffered channel every idle instance
// receives from (in body_downstream_get or next_request_wait). Handing a
// request to "whichever instance is idle" is then a single channel send,
// with no lock held while any guest runs. When no instance is idle the
// pool grows, one instance at a time, up to MaxInstances; an instance that
// ends (its _start returned, or it trapped) is replaced while the pool is
// below its warm size.

// spawn starts one instance on its own goroutine. It reports false if the
// server is shutting down.
func (s *Server) spawn() bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.isClosing() {
		return false
	}
	s.live.Add(1)
	s.starting.Add(1)
	s.m.started.Add(1)
	s.wg.Add(1)
	inst := newInstance(s, s.instID.Add(1))
	go s.runInstance(inst)
	return true
}

func (s *Server) runInstance(inst *instance) {
	defer s.wg.Done()
	began := time.Now()
	err := inst.run()
	failedEarly := inst.served == 0 && inst.starting
	inst.finish(err)
	live := s.live.Add(-1)
	if !cleanExit(err) {
		s.m.crashed.Add(1)
		s.log.Warn("guest instance failed", "instance", inst.id, "served", inst.served, "err", err)
	} else {
		s.log.Debug("guest instance ended", "instance", inst.id, "served", inst.served, "lifetime", time.Since(began))
	}
	if failedEarly {
		// It ended before ever waiting for a request: a broken module would
		// respawn in a tight loop, so report it and back off.
		select {
		case s.startFailed <- instanceStartError(err):
		default:
		}
		s.backoff()
	} else {
		s.resetBackoff()
	}
	if int(live) < s.minInstances {
		s.spawn()
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

// grow starts one more instance if all are busy, none is already starting
// and the pool is below its maximum. Starting one at a time keeps a burst
// from paying for many instantiations (each costs milliseconds of CPU)
// when a busy instance is about to become free anyway.
func (s *Server) grow() {
	if s.starting.Load() > 0 || int(s.live.Load()) >= s.maxInstances {
		return
	}
	s.spawn()
}

// acquire hands ds to an idle instance, waiting for one if necessary.
func (s *Server) acquire(ds *downstream) bool {
	select {
	case s.work <- ds:
		return true
	default:
	}
	s.grow()
	// Re-check growth periodically: an instance that was starting may have
	// died, or more capacity may be allowed now.
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case s.work <- ds:
			return true
		case <-t.C:
			s.grow()
		case <-ds.r.Context().Done():
			return false
		case <-s.closing:
			return false
		}
	}
}
