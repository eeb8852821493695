package main

import (
	"net"
	"strings"
	"testing"
)

// A second checkout's make run with only the aggregator and POP moved
// used to start Redis and ClickHouse and then fail in the aggregator on
// the dashboard's port, naming the aggregator's flag; it must be refused
// first, naming the launcher's variable.
func TestCheckFree(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free := "127.0.0.1:0"
	err = checkFree([]listenAddr{{free, "EDGEPIXEL_RUN_AGGREGATOR_ADDR"}, {held.Addr().String(), "EDGEPIXEL_RUN_DASHBOARD_ADDR"}, {free, "EDGEPIXEL_RUN_POP_ADDR"}})
	if err == nil || !strings.Contains(err.Error(), held.Addr().String()) || !strings.Contains(err.Error(), "EDGEPIXEL_RUN_DASHBOARD_ADDR=127.0.0.1:0") {
		t.Errorf("a held dashboard address: %v", err)
	}
	if err := checkFree([]listenAddr{{free, "A"}, {free, "B"}}); err != nil {
		t.Errorf("free addresses: %v", err)
	}
}
