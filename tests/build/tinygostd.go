package build

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// stdExtras are standard-library packages under net/ that TinyGo's own
// net tree (github.com/tinygo-org/net, which replaces Go's net/ wholly)
// does not have, and that a library the edge module uses imports:
// golang.org/x/net/publicsuffix declares its List as a
// net/http/cookiejar.PublicSuffixList. They are copied from the Go
// installation's GOROOT (same licence as Go), without tests; they build
// on TinyGo's net/http. The edge module's TinyGo build is the test that
// they are enough.
var stdExtras = []string{"net/http/cookiejar"}

// missingStdExtras lists the stdExtras absent from the TinyGo root troot.
func missingStdExtras(troot string) []string {
	var missing []string
	for _, p := range stdExtras {
		if _, err := os.Stat(filepath.Join(troot, "src", filepath.FromSlash(p))); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// addStdExtras copies the stdExtras missing from troot (a TinyGo root we
// own) into it from the Go installation.
func addStdExtras(ctx context.Context, troot string) error {
	goroot, err := goEnv(ctx, "GOROOT")
	if err != nil {
		return err
	}
	for _, p := range missingStdExtras(troot) {
		if err := copyPackage(filepath.Join(goroot, "src", filepath.FromSlash(p)), filepath.Join(troot, "src", filepath.FromSlash(p))); err != nil {
			return fmt.Errorf("adding %s to TinyGo's root: %w", p, err)
		}
	}
	return nil
}

// overlayRoot returns a TINYGOROOT for the official TinyGo whose root is
// troot: troot itself when it has every stdExtras package, else a tree
// under cacheDir of symbolic links to troot's files with the missing
// packages copied in. Only the directories on the way to an added
// package are real; everything else is troot's, so the overlay costs a
// few links and stays right when troot is upgraded in place (its path
// names the overlay).
func overlayRoot(ctx context.Context, troot, cacheDir string) (string, error) {
	missing := missingStdExtras(troot)
	if len(missing) == 0 {
		return troot, nil
	}
	sum := sha256.Sum256([]byte(troot + "\x00" + strings.Join(missing, ",")))
	dir := filepath.Join(cacheDir, fmt.Sprintf("root-overlay-%x", sum[:6]))
	if len(missingStdExtras(dir)) == 0 {
		return dir, nil
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	for _, p := range missing {
		// Link every entry of troot along the path to p, except the next
		// directory on the path, which is made real.
		parts := append([]string{"src"}, strings.Split(p, "/")...)
		for i := 0; i < len(parts); i++ {
			rel := filepath.Join(parts[:i]...)
			if err := linkEntries(filepath.Join(troot, rel), filepath.Join(tmp, rel), parts[i]); err != nil {
				return "", err
			}
		}
	}
	goroot, err := goEnv(ctx, "GOROOT")
	if err != nil {
		return "", err
	}
	for _, p := range missing {
		if err := copyPackage(filepath.Join(goroot, "src", filepath.FromSlash(p)), filepath.Join(tmp, "src", filepath.FromSlash(p))); err != nil {
			return "", err
		}
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// linkEntries makes dst a real directory holding a link to each entry of
// src but skip (which, if it exists in src, is made a real directory).
// Entries dst already has are left alone.
func linkEntries(src, dst, skip string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range ents {
		target := filepath.Join(dst, e.Name())
		if _, err := os.Lstat(target); err == nil {
			continue
		}
		if e.Name() == skip {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), target); err != nil {
			return err
		}
	}
	return nil
}

// copyPackage copies a package directory's non-test Go files.
func copyPackage(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			if err := copyFile(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

func goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
