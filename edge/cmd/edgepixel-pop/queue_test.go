package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/edge/pop/logsink"
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

// A query parameter of an HTTP log endpoint that looks like a misspelt
// option is refused, naming it and the options, from a flag or the
// variable: it went to the collector in its URL, the option left at its
// default. Other parameters are the collector's own (found by a new-user
// tester).
func TestLogEndpointMisspeltOption(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // "" : parsed
	}{
		{[]string{"--log-endpoint", "events=http://a/x?max_entires=5"}, nil, `query parameter "max_entires" is no option: did you mean max_entries?`},
		{[]string{"--log-endpoint", "events=http://a/x?Period=1s"}, nil, `"Period" is no option: did you mean period?`},
		{[]string{"--log-endpoint", "events=http://a/x?max-bytes=5"}, nil, "did you mean max_bytes?"},
		{[]string{"--log-endpoint", "events=http://a/x?retires=1"}, nil, "did you mean retries?"},
		{[]string{"--log-endpoint", "events=http://a/x?headers=Authorization:Bearer%20T"}, nil, "did you mean header?"},
		{nil, map[string]string{"EDGEPIXEL_POP_LOG_ENDPOINTS": "events=http://a/x?qeue=/q"}, "EDGEPIXEL_POP_LOG_ENDPOINTS: log endpoint events: query parameter \"qeue\" is no option: did you mean queue?"},
		{[]string{"--log-endpoint", "events=http://a/x?token=abc&period=1s&max_entries=3"}, nil, ""},
		// A collector's own words near a one-word option are its own
		// (a second tester's query, entries, series, reader, header2
		// were refused).
		{[]string{"--log-endpoint", "events=http://a/x?token=abc&query=1&entries=2&series=3&reader=4&header2=5&period=1s&max_entries=3"}, nil, ""},
		{[]string{"--log-endpoint", "events=http://a/x?peroid=1s"}, nil, "did you mean period?"},
	} {
		o, err := parseArgs(append([]string{"m.wasm"}, tc.args...), env(tc.env))
		if tc.want == "" {
			if err != nil || len(o.logEndpoints) != 1 || !strings.HasPrefix(o.logEndpoints[0].URL, "http://a/x?") || !strings.Contains(o.logEndpoints[0].URL, "token=abc") || o.logEndpoints[0].MaxEntries != 3 {
				t.Errorf("%q: %+v, %v; want the collector's own token kept in its URL", tc.args, o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "The options are period, max_entries,") {
			t.Errorf("%q %v: %v; want an error saying %q and listing the options", tc.args, tc.env, err, tc.want)
		}
	}
	// logOptions, which the check and its message use, are the options
	// logsink takes out of the URL.
	for _, opt := range logOptions {
		v := "1"
		switch opt {
		case "header":
			v = "A:b"
		case "failover":
			v = "http://b/"
		case "durability":
			v = "fsync"
		case "max_buffer":
			v = "10485760" // at least max_bytes' default
		case "bearer_file":
			v = filepath.Join(t.TempDir(), "log-token")
			os.WriteFile(v, []byte("tok\n"), 0o600)
		}
		ep, err := logsink.ParseEndpoint("x=http://a/?" + opt + "=" + url.QueryEscape(v))
		if err != nil || ep.URL != "http://a/" {
			t.Errorf("option %s: %+v %v: logsink does not take it", opt, ep, err)
		}
	}
}
