// Package buildinfo names the commit a binary was built from, for the
// commands' --version and their /metrics.
package buildinfo

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Revision is the first 12 hex digits of the commit the running binary was
// built from (Go's vcs.revision build setting), with "+dirty" when its
// tree had changes; "" when the build did not record one (go run, a
// build outside the repository).
func Revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

// Version is what a command's --version prints after its name: Revision,
// or why there is none.
func Version() string {
	if rev := Revision(); rev != "" {
		return rev
	}
	return "(no commit recorded: built outside a git clone, a worktree included, or with -buildvcs=false)"
}

// WriteMetric writes a Prometheus gauge named name (an "_info" metric, as
// Prometheus's naming guide has it), always 1, whose labels say which
// build is running: revision (Revision, "" when none was recorded) and
// go_version; after an upgrade, a query shows which processes run what.
func WriteMetric(w io.Writer, name string) {
	fmt.Fprintf(w, "# HELP %s The running build: revision is its commit (empty when the build recorded none), go_version the Go release that built it.\n# TYPE %s gauge\n%s{revision=%q,go_version=%q} 1\n",
		name, name, name, Revision(), runtime.Version())
}
