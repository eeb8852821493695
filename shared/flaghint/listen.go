package flaghint

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// ListenAddr checks addr, the value of the setting named name (a flag as
// "--addr", or an environment variable), as an address to listen on:
// HOST:PORT with a port that is a decimal number, port 0 for any free
// one. Empty, or with an empty port, it is an error: net.Listen
// takes both as "every interface, any free port", so a variable left
// unset (":$PORT", "127.0.0.1:$PORT") would put a private listener on
// the network at a port nobody knows. The error is a UsageError, and
// gives example, the setting's own default (each command listens on a
// port of its own: the aggregator's --addr error suggested the POP's
// 7676), as the form to follow.
func ListenAddr(name, addr, example string) error {
	want := "want HOST:PORT, e.g. " + example + " (port 0 picks a free one)"
	if addr == "" {
		return UsageError{Err: fmt.Errorf("%s is empty: %s", name, want)}
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		// Digits only, as written: a service name ("http") or a
		// padded number ("00") listens, but a URL made of the address
		// (the launcher's, the banner's) would not name that port.
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || strconv.FormatUint(n, 10) != port {
			err = fmt.Errorf("the port must be a number from 0 to 65535, without leading zeros")
		}
	}
	if err != nil {
		return UsageError{Err: fmt.Errorf("%s %q: %s: %v", name, addr, want, err)}
	}
	return nil
}

// ListenError is err, from listening on the address the setting named
// name gives, with what to do: for an address in use, stop what listens
// there or choose another; for another failure (not this machine's
// address, a name that does not resolve), nothing listens there to stop,
// so choose an address of this machine. Port 0 picks a free one.
func ListenError(name string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: %w: stop what listens there (ss -ltnp names it), or choose another address", name, err)
	}
	return fmt.Errorf("%s: %w: choose an address of this machine (127.0.0.1, or 0.0.0.0 for every interface; port 0 picks a free one)", name, err)
}

// Loopback reports whether addr, a listener's address as net.Listener's
// Addr gives it (HOST:PORT, the host an IP address), reaches this machine
// only. An unspecified host ("[::]:80", "0.0.0.0:80": every interface) or
// one that is not an address is not loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
