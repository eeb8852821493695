package pop

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Health. A component of the POP that stops doing its job for good fails
// the Server: Ready reports it at once (so /healthz turns unhealthy before
// anything else happens), and Failed is closed, on which the command shuts
// down and exits non-zero with the reason, for a supervisor to restart it.
// Components that stop:
//
//   - the pool, when no guest instance of the current module version has
//     been able to start for startFailTimeout (at least startFailMin
//     attempts, with back-off in between): a module that cannot start any
//     more would otherwise leave a process that answers nothing;
//   - a file log endpoint or the access log, when a write fails (the disk
//     is full, the file system read-only): what they are given is lost;
//   - the listener, when accept fails permanently: net/http's Serve then
//     returns, which the command treats the same way.
//
// A component that retries by design is not stopped: an HTTP log endpoint
// whose collector is down keeps its bounded queue and retries. Degraded
// lists such conditions, for /healthz to show while still healthy, and the
// metrics count them.

// Pool start failures that fail the Server.
const (
	startFailTimeout = 10 * time.Second
	startFailMin     = 3
)

type health struct {
	failAfter time.Duration // startFailTimeout, shorter in tests

	failOnce sync.Once
	failed   chan struct{}
	err      error // set before failed is closed

	startMu    sync.Mutex
	startFails int       // consecutive start failures of the current program
	startSince time.Time // the first of them
	started    atomic.Bool
}

// fail records that a component stopped, once.
func (s *Server) fail(err error) {
	s.health.failOnce.Do(func() {
		s.health.err = err
		s.log.Error("a POP component stopped; the POP must be restarted", "err", err)
		close(s.health.failed)
	})
}

// Failed is closed when a component of the server stopped for good (see
// Err): the server cannot serve properly any more and the process should
// exit and be restarted.
func (s *Server) Failed() <-chan struct{} { return s.health.failed }

// Err is why Failed was closed; nil while it is open.
func (s *Server) Err() error {
	select {
	case <-s.health.failed:
		return s.health.err
	default:
		return nil
	}
}

// Ready reports whether the server can serve: no component stopped, it is
// not shutting down and at least one guest instance is running. /healthz
// answers from it.
func (s *Server) Ready() error {
	if err := s.Err(); err != nil {
		return fmt.Errorf("stopped: %w", err)
	}
	if s.isClosing() {
		return errors.New("shutting down")
	}
	if s.live.Load() <= 0 {
		return errors.New("no live guest instance")
	}
	return nil
}

// Degraded lists conditions that do not stop the server but an operator
// should see (a log collector that does not accept deliveries, a module
// or geolocation update or a fastly.toml that could not be read, a
// backend refusing or failing requests), one line each; nil when there
// are none.
func (s *Server) Degraded() []string {
	var out []string
	if s.sinks != nil {
		out = s.sinks.Degraded()
	}
	if s.geo != nil && s.geo.db != nil {
		out = append(out, s.geo.db.Degraded()...) // an update that could not be loaded
	}
	for _, why := range []*string{s.reloadFailure.Load(), s.configFailure.Load(), s.secretFailure.Load()} {
		if why != nil {
			out = append(out, *why)
		}
	}
	return append(out, s.backendFails.degraded()...) // refused or failing backend requests
}

// startSucceeded is called when an instance first waits for a request.
func (s *Server) startSucceeded() {
	if s.health.started.Load() {
		return
	}
	s.health.startMu.Lock()
	s.health.startFails = 0
	s.health.started.Store(true)
	s.health.startMu.Unlock()
}

// startFailed is called when an instance of the current program p ended
// before waiting for its first request. It fails the server when no
// instance of p has been able to start for long enough.
func (s *Server) startFailed(p *program, err error) {
	h := &s.health
	h.startMu.Lock()
	h.started.Store(false)
	if h.startFails == 0 {
		h.startSince = time.Now()
	}
	h.startFails++
	n, since := h.startFails, time.Since(h.startSince)
	h.startMu.Unlock()
	if n >= startFailMin && since >= h.failAfter && p.live.Load()-p.starting.Load() <= 0 {
		s.fail(fmt.Errorf("no guest instance could start for %s (%d attempts): %w", since.Round(time.Second), n, err))
	}
}
