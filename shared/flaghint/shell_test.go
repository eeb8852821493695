package flaghint

import (
	"os/exec"
	"testing"
)

// What ShellQuote gives, sh reads back as the one word it was.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"/tmp/a", "", "it's here", `a"b $HOME`, "semi;colon", "tab\there"} {
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("%q: sh read %q (%v)", s, out, err)
		}
	}
	if got := ShellQuote("/tmp/plain-path_1.txt"); got != "/tmp/plain-path_1.txt" {
		t.Errorf("a plain path quoted: %s", got)
	}
}
