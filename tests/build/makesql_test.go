package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make sql passes Q to edgepixel-run as typed: make expanded a '$' in it
// (a regex's anchor), so the query that reached ClickHouse was cut (a
// new-user tester's).
func TestMakeSQLTakesQAsTyped(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	bin := t.TempDir()
	// Stands in for edgepixel-run: prints its last argument, the query.
	fake := "#!/bin/sh\nfor a in \"$@\"; do last=\"$a\"; done\nprintf '%s' \"$last\"\n"
	if err := os.WriteFile(filepath.Join(bin, "edgepixel-run"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	q := `SELECT count() FROM events WHERE match(path, '^/blog/.*$') AND name != '$$x' -- it's`
	for _, how := range []struct {
		args []string
		env  []string
	}{
		{args: []string{"Q=" + q}},
		{env: []string{"Q=" + q}},
	} {
		cmd := exec.Command("make", append([]string{"-s", "-C", "../..", "BIN=" + bin, "sql"}, how.args...)...)
		cmd.Env = append(os.Environ(), how.env...)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != q {
			t.Errorf("make sql (args %q, env %q) passed %q (%v), want %q", how.args, how.env, strings.TrimSpace(string(out)), err, q)
		}
	}
}
