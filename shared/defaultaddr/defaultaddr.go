// Package defaultaddr holds the default listen addresses of edgepixel's
// servers, which the servers' flags and edgepixel-run (make run) share, so
// that a local stack started either way listens where the other expects.
// All are loopback: nothing listens beyond the machine unless told to.
package defaultaddr

const (
	// POP is edgepixel-pop's --addr: Viceroy's default, where the Fastly
	// CLI's `fastly compute serve` sends its requests.
	POP = "127.0.0.1:7676"
	// Aggregator is edgepixel-aggregator's --addr, the public one (ingest).
	Aggregator = "127.0.0.1:8080"
	// Dashboard is edgepixel-aggregator's --dashboard-addr, the private one
	// (the dashboard, /api/, /live, /metrics).
	Dashboard = "127.0.0.1:8081"
)
