package main

import (
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
)

// The start the README once gave for one's own machines: make run's
// fastly.toml (journal set) without the journal on the command line. It
// answered every hit and stored none.
func TestCheckDeliveryRefusesAnUnconfiguredJournal(t *testing.T) {
	m, err := fastlytoml.Parse([]byte(`manifest_version = 3
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
journal = "edgepixel_journal"
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = checkDelivery(m, nil)
	if err == nil || !strings.Contains(err.Error(), "--log-endpoint 'edgepixel_journal=https://") {
		t.Fatalf("no journal endpoint: %v, want a refusal naming the flag", err)
	}
	for _, eps := range [][]logsink.Endpoint{
		{{Name: "edgepixel_journal", Kind: logsink.HTTP, URL: "http://aggregator/ingest/ndjson"}},
		{{Name: "edgepixel_journal", Kind: logsink.Stdout}}, // printed on purpose
		{{Name: "*", Kind: logsink.Stdout}},
	} {
		if err := checkDelivery(m, eps); err != nil {
			t.Errorf("%+v: %v", eps, err)
		}
	}
	// A manifest that names no endpoint needs none.
	plain, err := fastlytoml.Parse([]byte("manifest_version = 3\n[local_server.config_stores.edgepixel]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixel.contents]\npop = \"local\"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDelivery(plain, nil); err != nil {
		t.Errorf("no endpoint named: %v", err)
	}
}
