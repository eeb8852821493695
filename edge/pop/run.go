package pop

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

// ExitTrap is Run's exit code for a guest that trapped (a wasm trap, not a
// proc_exit): 128+SIGABRT, what Viceroy's run subcommand returns on Unix
// for the same case, so a test runner sees a crash, not a test failure.
const ExitTrap = 134

// Run runs the module at cfg.WasmPath once as a WASI command and returns
// its exit code: what Viceroy's `run` subcommand does, and what Fastly's
// SDKs use to run their integration tests
// (`go test -exec "viceroy run -C fastly.toml"`).
//
// The guest's argv is the module file's name without its extension (as in
// Viceroy) followed by args; it reads stdin and writes cfg.Stdout and
// cfg.Stderr directly, and gets the FASTLY_* environment every guest gets.
// The backends, stores and geolocation of cfg.Manifest are available, and
// cfg.LogEndpoints apply as when serving.
//
// There is no client. A guest that asks for its downstream request anyway
// (fsthttp.ServeFunc calls body_downstream_get) gets Viceroy's
// placeholder: GET http://example.com/ from 127.0.0.1 to 127.0.0.1:80 with
// request ID 0 (the sandbox's FASTLY_TRACE_ID is 0 too), and whatever it
// answers is discarded. Asking for a further request (next_request_wait)
// gets $none at once, which ends a ServeMany loop.
//
// The memory limit and CPU budget apply as configured; the wall-clock
// budget is off unless cfg.WallBudget is set (> 0), since a test binary
// runs as long as its own -test.timeout allows. Pool, reload and access
// log settings do not apply.
//
// code is the guest's proc_exit code, 0 if _start returned, or ExitTrap
// if it trapped (err then says why). When ctx ends first the guest is
// terminated and err is ctx's error. An error before the guest started
// (the module does not compile, the manifest's stores cannot be loaded)
// comes with code 1.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader) (code int, err error) {
	if cfg.WallBudget == 0 {
		cfg.WallBudget = -1
	}
	cfg.AccessLog = nil
	s, prog, err := prepare(ctx, cfg)
	if err != nil {
		return 1, err
	}
	defer func() {
		// Deliver what the guest logged to HTTP log endpoints, within
		// reason: a collector that is down must not hang the command.
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := s.Shutdown(sctx); serr != nil {
			s.log.Warn("log endpoints not fully delivered", "err", serr)
		}
	}()
	name := strings.TrimSuffix(filepath.Base(cfg.WasmPath), filepath.Ext(cfg.WasmPath))
	s.modCfg = s.modCfg.WithArgs(append([]string{name}, args...)...)
	if stdin != nil {
		s.modCfg = s.modCfg.WithStdin(stdin)
	}
	stop := context.AfterFunc(ctx, s.rootCancel) // terminates the guest
	defer stop()

	done := make(chan struct{})
	defer close(done)
	// The placeholder waits in line from the start; the instance takes it
	// if it asks for a request.
	ds := newDownstream(placeholderRequest())
	prog.d.offer(ds)
	go func() {
		select {
		case <-ds.taken:
			// One request only: from now on the guest waits for none.
			prog.retireOnce.Do(func() { close(prog.retired) })
		case <-done:
		}
	}()
	go discardOutcomes(ds, done)

	inst := newInstance(s, prog, 1)
	inst.sandboxID = 0   // Viceroy's run: sandbox and placeholder request 0
	prog.starting.Add(1) // as spawn does; the instance's first wait or finish takes it back
	err = inst.run()
	inst.finish(err)

	var ee *sys.ExitError
	switch {
	case ctx.Err() != nil:
		return 1, ctx.Err()
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return int(ee.ExitCode()), nil
	default:
		return ExitTrap, err
	}
}

// placeholderRequest is the downstream request of a run without a client,
// the one Viceroy's run subcommand makes up.
func placeholderRequest() *http.Request {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, local)
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/", nil)
	r.RequestURI = "/"
	r.RemoteAddr = "127.0.0.1:0"
	return r
}

// discardOutcomes takes whatever the guest answers the placeholder request
// and drops it, so a guest streaming a response body is never blocked.
func discardOutcomes(ds *downstream, done <-chan struct{}) {
	for {
		select {
		case o := <-ds.ready:
			if o.body != nil {
				o.body.stop()
			}
		case <-done:
			return
		}
	}
}
