package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// lossOf reads the aggregator's /api/loss for site, or for all sites
// when it is "", over the last two hours (and the next minute).
func lossOf(t *testing.T, s *stack.Stack, site string) store.Loss {
	t.Helper()
	now := time.Now()
	u := fmt.Sprintf("/api/loss?from=%d&to=%d", now.Add(-2*time.Hour).UnixMilli(), now.Add(time.Minute).UnixMilli())
	if site != "" {
		u += "&site=" + url.QueryEscape(site)
	}
	resp, err := s.DashboardGet(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var l store.Loss
	if resp.StatusCode != 200 {
		t.Fatalf("/api/loss: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("/api/loss: %v: %s", err, b)
	}
	return l
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
