//go:build unix

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With HOME and XDG_CACHE_HOME unset (a service's empty environment) the
// compile cache is a directory of this user's alone under the temporary
// directory, said at start; one another user could write is refused, and
// then the warning says that nothing is cached and how to fix it. There
// was no cache and no word (found by a new-user tester).
func TestCompileCacheWithoutHome(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	want := filepath.Join(tmp, fmt.Sprintf("edgepixel-pop-%d", os.Getuid()))
	missing := filepath.Join(t.TempDir(), "a.wasm")

	o, err := parseArgs([]string{"m.wasm"}, env(nil))
	if err != nil || o.compileCache != want || !strings.Contains(o.compileCacheNote, "the compile cache is "+want) {
		t.Fatalf("%+v %v: want the compile cache %s, and a note", o, err, want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v: want a directory of mode 0700", want, fi, err)
	}
	var errb bytes.Buffer
	run([]string{"--addr", "127.0.0.1:0", missing}, env(nil), io.Discard, &errb)
	if !strings.Contains(errb.String(), "level=INFO") || !strings.Contains(errb.String(), "the compile cache is "+want) {
		t.Errorf("stderr %q: want the cache said", errb.String())
	}
	// A HOME where no cache directory can be made (a service user's
	// /nonexistent; here a file, as root may write anywhere): the
	// temporary one, not a POP that will not start.
	home := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(home, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	if o, err := parseArgs([]string{"m.wasm"}, env(nil)); err != nil || o.compileCache != want || !strings.Contains(o.compileCacheNote, "the compile cache is "+want) || !strings.Contains(o.compileCacheNote, home) {
		t.Errorf("HOME a file: %+v %v: want the compile cache %s, and a note naming %s", o, err, want, home)
	}
	// A cache chosen, or none: the default is not made.
	home = t.TempDir()
	t.Setenv("HOME", home)
	for _, args := range [][]string{{"--compile-cache", "off", "m.wasm"}, {"--version"}} {
		if _, err := parseArgs(args, env(nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(home, ".cache")); err == nil {
			t.Errorf("%q made the default compile cache under %s", args, home)
		}
	}
	t.Setenv("HOME", "")

	// Chosen: no note.
	for _, args := range [][]string{{"--compile-cache", "off", "m.wasm"}, {"--compile-cache", "/x", "m.wasm"}} {
		if o, err := parseArgs(args, env(nil)); err != nil || o.compileCacheNote != "" {
			t.Errorf("%q: %+v %v: want no note", args, o, err)
		}
	}
	if o, err := parseArgs([]string{"m.wasm"}, env(map[string]string{"EDGEPIXEL_POP_COMPILE_CACHE": "/x"})); err != nil || o.compileCacheNote != "" {
		t.Errorf("EDGEPIXEL_POP_COMPILE_CACHE: %+v %v: want no note", o, err)
	}

	// Writable by others: not used, and a warning.
	if err := os.Chmod(want, 0o777); err != nil {
		t.Fatal(err)
	}
	o, err = parseArgs([]string{"m.wasm"}, env(nil))
	if err != nil || o.compileCache != "" || !strings.Contains(o.compileCacheNote, "no compile cache") {
		t.Fatalf("%+v %v: want no compile cache, and a note", o, err)
	}
	for _, args := range [][]string{{"--addr", "127.0.0.1:0", missing}, {"run", missing}} {
		errb.Reset()
		run(args, env(nil), io.Discard, &errb)
		if !strings.Contains(errb.String(), "level=WARN") || !strings.Contains(errb.String(), "no compile cache") ||
			!strings.Contains(errb.String(), "compiled afresh at every start") || !strings.Contains(errb.String(), "--compile-cache DIR or EDGEPIXEL_POP_COMPILE_CACHE chooses one") {
			t.Errorf("%q: stderr %q: want a warning that nothing is cached, and how to fix it", args, errb.String())
		}
	}
}
