package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// state is what a running launcher writes to DIR/run.json for `make sql`
// (and any other tool) to find the stack. It is removed when the stack
// stops; a file left by a killed launcher is recognised by its dead PID.
type state struct {
	PID            int    `json:"pid"`
	Dir            string `json:"dir"`
	Bin            string `json:"bin,omitempty"` // the binaries it runs, as `make run BIN=` gave them
	AggregatorURL  string `json:"aggregator_url"`
	DashboardURL   string `json:"dashboard_url"`
	PopURL         string `json:"pop_url"`
	PopAdminURL    string `json:"pop_admin_url,omitempty"`   // the POP's /healthz and /metrics, when EDGEPIXEL_POP_ADMIN_ADDR is set
	ClickHouseHTTP string `json:"clickhouse_http,omitempty"` // http://127.0.0.1:port
	ClickHouseTCP  string `json:"clickhouse_tcp,omitempty"`  // 127.0.0.1:port, native protocol
	ClickHouseDB   string `json:"clickhouse_db,omitempty"`
	RedisURL       string `json:"redis_url,omitempty"`
	Logs           string `json:"logs"`
}

func statePath(dir string) string { return filepath.Join(dir, "run.json") }

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// writeState replaces the file atomically, so a reader never sees half.
func writeState(dir string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

// running reports whether the launcher that wrote st is still alive (and
// its PID not reused by another program since).
func (st state) running() bool {
	if st.PID <= 0 || syscall.Kill(st.PID, 0) != nil {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.PID))
	return err != nil || strings.TrimSpace(string(comm)) == "edgepixel-run"
}
