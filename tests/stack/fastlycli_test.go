package stack

import (
	"strings"
	"testing"
)

func TestFastlyCLIWithoutNPM(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := FastlyCLI(t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "npm not found") || !strings.Contains(err.Error(), "apt-get install nodejs npm") {
		t.Errorf("error %v: it must say what to install", err)
	}
}
