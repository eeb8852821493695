package main

import (
	"net"
	"testing"
)

// The check behind the start's warnings for the dashboard and pprof
// listening beyond loopback (pprof's was silent, found by a new-user
// tester: --pprof-addr :41094 served profiles to the network without a
// word). It reads the address as bound: ":41094" is "[::]:41094" then.
func TestBeyondLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6060":       false,
		"127.0.0.2:6060":       false,
		"[::1]:6060":           false,
		"[::ffff:127.0.0.1]:1": false,
		"[::]:41094":           true,
		"0.0.0.0:41094":        true,
		"192.168.1.5:6060":     true,
		"[2001:db8::1]:6060":   true,
		"[fe80::1%eth0]:6060":  true,
		"localhost:6060":       true, // not an address as bound: unreadable, so warned of
		"":                     true,
	} {
		if got := beyondLoopback(addr); got != want {
			t.Errorf("beyondLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	// A listener on loopback, as the defaults are, is not warned of.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if beyondLoopback(ln.Addr().String()) {
		t.Errorf("%s counted as beyond loopback", ln.Addr())
	}
}
