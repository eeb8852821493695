package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

// Execution limits, pool behaviour and hot reload: the flags and their
// environment variables (see usage), and SIGHUP.

type limitOptions struct {
	watch         bool
	freshInstance bool
	wallBudget    time.Duration
	cpuBudget     time.Duration
	idleTimeout   time.Duration
}

func defaultLimitOptions() limitOptions {
	return limitOptions{watch: true, wallBudget: 2 * time.Minute, idleTimeout: 5 * time.Second}
}

// fromEnv reads the EDGEPIXEL_POP_* variables (before the flags, which win).
func (l *limitOptions) fromEnv(getenv func(string) string) error {
	for _, b := range []struct {
		key string
		dst *bool
	}{{"EDGEPIXEL_POP_WATCH", &l.watch}, {"EDGEPIXEL_POP_FRESH_INSTANCE", &l.freshInstance}} {
		if v, ok := lookup(getenv, b.key); ok {
			x, err := strconv.ParseBool(v)
			if err != nil {
				return envError(b.key, v, err)
			}
			*b.dst = x
		}
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{
		{"EDGEPIXEL_POP_WALL_BUDGET", &l.wallBudget},
		{"EDGEPIXEL_POP_CPU_BUDGET", &l.cpuBudget},
		{"EDGEPIXEL_POP_IDLE_TIMEOUT", &l.idleTimeout},
	} {
		if v, ok := lookup(getenv, d.key); ok {
			x, err := time.ParseDuration(v)
			if err != nil {
				return envError(d.key, v, err)
			}
			*d.dst = x
		}
	}
	return nil
}

func (l *limitOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&l.watch, "watch", l.watch, "")
	fs.BoolVar(&l.freshInstance, "fresh-instance", l.freshInstance, "")
	fs.DurationVar(&l.wallBudget, "wall-budget", l.wallBudget, "")
	fs.DurationVar(&l.cpuBudget, "cpu-budget", l.cpuBudget, "")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", l.idleTimeout, "")
}

func (l *limitOptions) check() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"wall-budget", l.wallBudget}, {"cpu-budget", l.cpuBudget}, {"idle-timeout", l.idleTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %v cannot be negative (0 turns it off)", d.flag, d.v)
		}
	}
	return nil
}

// apply sets the pop.Config fields. On the command line 0 means "none"
// for every duration; in pop.Config 0 means the default.
func (l *limitOptions) apply(cfg pop.Config) pop.Config {
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	cfg.Reload = l.watch
	cfg.FreshInstances = l.freshInstance
	cfg.WallBudget = off(l.wallBudget)
	cfg.CPUBudget = l.cpuBudget
	cfg.IdleTimeout = off(l.idleTimeout)
	return cfg
}

// reloadOnHangup reloads the module, fastly.toml's config stores and the
// secret stores' files (pop.Server.Reload) on SIGHUP until the returned function
// is called, unless the hangup ended the process that started the POP
// too: then the session is over (a terminal closed, or a script stopped
// `fastly compute serve` with kill -HUP on its process group, as
// compute-sdk-go's serve.sh does) and the POP shuts down, as Viceroy does
// on SIGHUP. A reload signalled to the POP alone (systemd's ExecReload,
// kill -HUP PID) leaves its parent running. shutdown starts the shutdown.
//
// The parent a hangup is measured against is the one the POP has had
// for a while: a POP whose starting script exited long ago (re-parented
// with no hangup) reloads on a later kill -HUP rather than taking the
// script's end for this hangup's.
func reloadOnHangup(s *pop.Server, log *slog.Logger, shutdown func()) (stop func()) {
	parent := os.Getppid()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		// A loaded machine can take seconds to end the parent: after a
		// reload the parent is watched for hangupWatch more, and its end
		// then still ends the POP.
		watch := time.NewTicker(50 * time.Millisecond)
		watch.Stop()
		defer watch.Stop()
		// A new parent seen on two polls in a row, with no hangup in
		// between and no watch running, is the POP's parent from then on.
		poll := time.NewTicker(parentPoll)
		defer poll.Stop()
		var until time.Time
		seen := parent
		for {
			select {
			case <-hup:
				if parentEnded(parent, 500*time.Millisecond) {
					log.Info("SIGHUP ended the parent process too: shutting down")
					shutdown()
					return
				}
				// Said here, where an operator who ran `systemctl reload`
				// looks: what a reload applies, and what needs a restart.
				log.Info("SIGHUP: reloading the module, fastly.toml's config stores and the secret stores; a change to its other tables (backends, geolocation, ACLs) needs a restart")
				s.Reload(context.Background()) // logs its own failure
				until = time.Now().Add(hangupWatch)
				watch.Reset(50 * time.Millisecond)
			case <-watch.C:
				if os.Getppid() != parent {
					log.Info("SIGHUP ended the parent process too: shutting down")
					shutdown()
					return
				}
				if time.Now().After(until) {
					watch.Stop()
				}
			case <-poll.C:
				p := os.Getppid()
				if p != parent && p == seen && time.Now().After(until) {
					parent = p
				}
				seen = p
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// parentPoll is how often the POP looks for a new parent.
const parentPoll = time.Second

// hangupWatch is how long after a SIGHUP the POP still shuts down if its
// parent ends.
const hangupWatch = 30 * time.Second

// parentEnded reports whether the POP's parent, which was pid parent,
// has ended (the POP was re-parented) within wait.
func parentEnded(parent int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		if os.Getppid() != parent {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
