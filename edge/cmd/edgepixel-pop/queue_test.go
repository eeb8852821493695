package main

import (
	"path/filepath"
	"testing"
)

// --log-queue-dir gives HTTP endpoints without queue= a directory each;
// one with its own queue= keeps it.
func TestLogQueueDir(t *testing.T) {
	e := env(map[string]string{"EDGEPIXEL_POP_LOG_QUEUE_DIR": "/env/q"})
	o, err := parseArgs([]string{"m.wasm", "--log-queue-dir", "/q",
		"--log-endpoint", "events=http://a/ingest/ndjson",
		"--log-endpoint", "*=http://a/other",
		"--log-endpoint", "own=http://a/x?queue=/mine&durability=fsync",
		"--log-endpoint", "mem=http://a/x?queue=memory",
		"--log-endpoint", "f=file:/tmp/f",
	}, e)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"events": filepath.Join("/q", "events"), "*": filepath.Join("/q", "_all"), "own": "/mine", "mem": "memory", "f": ""}
	for _, ep := range o.logEndpoints {
		if ep.Queue != want[ep.Name] {
			t.Errorf("%s: queue %q, want %q", ep.Name, ep.Queue, want[ep.Name])
		}
	}
	o, err = parseArgs([]string{"m.wasm", "--log-endpoint", "events=http://a/"}, e)
	if err != nil || o.logEndpoints[0].Queue != filepath.Join("/env/q", "events") {
		t.Fatalf("from the environment: %+v %v", o.logEndpoints, err)
	}
}
