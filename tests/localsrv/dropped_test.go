package localsrv

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A dropped partition stays dropped when the server is killed and started
// again: the parts a merge replaced, which 18.16 loaded again at a restart
// once the merged part was dropped, are removed within MergeTreeConfig's
// lifetime (retention's DROP PARTITION, README: Privacy).
func TestDroppedPartitionStaysDropped(t *testing.T) {
	if _, ok := ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	ctx := context.Background()
	c, err := StartClickHouse(ctx, t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	q := func(sql string) string {
		t.Helper()
		out, err := c.query(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return strings.TrimSpace(out)
	}
	q("CREATE TABLE default.t (d Date, x UInt32) ENGINE = MergeTree PARTITION BY d ORDER BY x")
	for i := range 3 {
		q("INSERT INTO default.t VALUES ('2026-01-01', " + strconv.Itoa(i+1) + "), ('2026-01-02', 9)")
	}
	q("OPTIMIZE TABLE default.t PARTITION '2026-01-01' FINAL")
	if got := q("SELECT countIf(active), countIf(NOT active) FROM system.parts WHERE database = 'default' AND table = 't' AND partition = '2026-01-01'"); got != "1\t3" {
		t.Fatalf("parts (active, replaced) after the merge: %s", got)
	}
	q("ALTER TABLE default.t DROP PARTITION '2026-01-01'")
	// What a restart loads is what is on disk: system.parts stops
	// listing a part when its removal starts, before its directory is
	// gone (a kill in between brought a part back in CI), so the test
	// watches the table's directory itself.
	tableDir := filepath.Join(c.Dir, "data", "data", "default", "t")
	onDisk := func() []string {
		t.Helper()
		entries, err := os.ReadDir(tableDir)
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, e := range entries {
			if e.IsDir() && strings.Contains(e.Name(), "20260101_") {
				parts = append(parts, e.Name())
			}
		}
		return parts
	}
	start := time.Now()
	for {
		left := onDisk()
		if len(left) == 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("the replaced parts of the dropped partition are still on disk after 3 minutes: %v", left)
		}
		time.Sleep(time.Second)
	}
	t.Logf("the replaced parts were removed %v after the drop", time.Since(start).Round(time.Second))
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := q("SELECT d, count() FROM default.t GROUP BY d ORDER BY d"); got != "2026-01-02\t3" {
		t.Errorf("rows after the restart: %q, want only 2026-01-02's 3; the parts loaded: %s", got,
			q("SELECT name, rows, active FROM system.parts WHERE database = 'default' AND table = 't' FORMAT TSV"))
	}
}
