package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeListsEveryFlag: the README's configuration table for the
// aggregator names every flag --help lists, with the environment variable
// the binary reads for it, so a flag added to the code cannot stay
// undocumented (--live-interval did).
func TestReadmeListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n### edgepixel-aggregator\n")
	if start < 0 {
		t.Fatal("README has no ### edgepixel-aggregator section")
	}
	end := strings.Index(text[start+1:], "\n### ")
	if end < 0 {
		t.Fatal("the ### edgepixel-aggregator section does not end")
	}
	rows := map[string]string{} // flag name -> its table row
	for _, line := range strings.Split(text[start:start+1+end], "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `--") || len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = line
		}
	}

	out, _ := exec.Command(aggBinary(t), "--help").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1)
	envs := regexp.MustCompile(`\(env (EDGEPIXEL_AGG_[A-Z0-9_]+)\)`)
	if len(flags) < 40 {
		t.Fatalf("--help lists %d flags; is its format still `  --name`?\n%s", len(flags), out)
	}
	for _, f := range flags {
		name := f[1]
		row, ok := rows[name]
		if !ok {
			t.Errorf("--%s is not in the README's edgepixel-aggregator table", name)
			continue
		}
		// The flag's usage paragraph ends at the next flag's line.
		para := string(out)[strings.Index(string(out), f[0]):]
		if next := regexp.MustCompile(`\n  -`).FindStringIndex(para[1:]); next != nil {
			para = para[:next[0]+1]
		}
		env := envs.FindStringSubmatch(para)
		if env == nil {
			continue // --version: a question, not a setting
		}
		// The table abbreviates a second variable of a row as `…_SUFFIX`.
		short := "…_" + strings.TrimPrefix(env[1], "EDGEPIXEL_AGG_")
		if !strings.Contains(row, "`"+env[1]+"`") && !strings.Contains(row, "`"+short+"`") {
			t.Errorf("--%s reads %s, which its README row does not name: %s", name, env[1], row)
		}
	}
}
