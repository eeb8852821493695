package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An address in use stops the start before the data directory is made:
// it used to be bound after server.Open, which left a fresh directory
// behind (dashboard-token, session-key, lock, events, spool), found by a
// new-user tester. So for each listener, and the others are let go.
func TestBusyAddressLeavesNoDataDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, name := range []string{"--addr", "--dashboard-addr", "--pprof-addr"} {
		// The other listeners on fixed free ports, to see they are let go.
		free := map[string]string{}
		for _, other := range []string{"--addr", "--dashboard-addr", "--pprof-addr"} {
			if other == name {
				free[other] = busy.Addr().String()
				continue
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			free[other] = l.Addr().String()
			l.Close()
		}
		data := filepath.Join(t.TempDir(), "data")
		args := []string{"--data-dir", data, "--secret", "0123456789abcdef0123", "--log-level", "error"}
		for flag, addr := range free {
			args = append(args, flag, addr)
		}
		err := run(args)
		if err == nil || !strings.Contains(err.Error(), name+":") || !strings.Contains(err.Error(), "stop what listens there") {
			t.Errorf("%s in use: %v; want the flag named and what to do", name, err)
		}
		if _, serr := os.Stat(data); !os.IsNotExist(serr) {
			t.Errorf("%s in use: the data directory was made (%v)", name, serr)
		}
		for flag, addr := range free {
			if flag == name {
				continue
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("%s in use: %s %s was not let go: %v", name, flag, addr, err)
				continue
			}
			l.Close()
		}
	}
}
