package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// netRepo makes a git repository holding a stand-in net package in two
// commits, and returns it with the first commit (the "pinned" one).
func netRepo(t *testing.T) (repo, pinned string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo = t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q")
	os.MkdirAll(filepath.Join(repo, "http"), 0o755)
	os.WriteFile(filepath.Join(repo, "dial.go"), []byte("// pinned\npackage net\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "http", "client.go"), []byte("package http\n"), 0o644)
	run("add", ".")
	run("commit", "-q", "-m", "pinned")
	pinned = run("rev-parse", "HEAD")
	os.WriteFile(filepath.Join(repo, "dial.go"), []byte("// later\npackage net\n"), 0o644)
	run("commit", "-q", "-am", "later")
	return repo, pinned
}

// checkNet fails unless dst holds the pinned commit's tree.
func checkNet(t *testing.T, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dst, "dial.go"))
	if err != nil || !strings.HasPrefix(string(b), "// pinned\n") {
		t.Errorf("dial.go: %q %v, want the pinned commit's", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "http", "client.go")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); err == nil {
		t.Error(".git copied")
	}
}

func TestNetSources(t *testing.T) {
	ctx := context.Background()
	repo, pinned := netRepo(t)
	bundle := filepath.Join(t.TempDir(), "net.bundle")
	if out, err := exec.Command("git", "-C", repo, "bundle", "create", bundle, "--all").CombinedOutput(); err != nil {
		t.Fatalf("git bundle: %v\n%s", err, out)
	}
	// A snapshot of the pinned commit, as a directory.
	snapshot := t.TempDir()
	if err := archive(ctx, repo, pinned, snapshot); err != nil {
		t.Fatal(err)
	}
	// A directory like ../shared/tinygo: snapshots of two commits and a
	// bundle.
	shared := t.TempDir()
	if err := copyDir(snapshot, filepath.Join(shared, "net-"+pinned[:7])); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(shared, "net-0000000"), 0o755)
	os.WriteFile(filepath.Join(shared, "net-0000000", "dial.go"), []byte("// other\npackage net\n"), 0o644)
	bundleOnly := t.TempDir()
	if err := copyFile(bundle, filepath.Join(bundleOnly, "tinygo-net.bundle")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, src, from string }{
		{"the package itself", snapshot, snapshot},
		{"a clone", repo, repo},
		{"a git bundle", bundle, bundle},
		{"snapshots by commit", shared, filepath.Join(shared, "net-"+pinned[:7])},
		{"a directory with a bundle", bundleOnly, filepath.Join(bundleOnly, "tinygo-net.bundle")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "src", "net")
			from, err := copyNet(ctx, tc.src, "https://example.invalid/net", pinned, dst)
			if err != nil {
				t.Fatal(err)
			}
			if from != tc.from {
				t.Errorf("taken from %s, want %s", from, tc.from)
			}
			checkNet(t, dst)
		})
	}

	t.Run("nothing usable", func(t *testing.T) {
		empty := t.TempDir()
		_, err := copyNet(ctx, empty, "https://example.invalid/net", pinned, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), TinyGoNetEnv+"="+empty) || !strings.Contains(err.Error(), "net-"+pinned[:7]) {
			t.Errorf("error %v should name %s and the snapshot it looked for", err, TinyGoNetEnv)
		}
	})
	t.Run("a bundle without the commit", func(t *testing.T) {
		_, err := copyNet(ctx, bundle, "https://example.invalid/net", strings.Repeat("ab", 20), t.TempDir())
		if err == nil {
			t.Error("a commit the bundle lacks was extracted")
		}
	})
	t.Run("no TINYGO_NET and no network", func(t *testing.T) {
		_, err := copyNet(ctx, "", "file://"+filepath.Join(t.TempDir(), "absent"), pinned, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "set "+TinyGoNetEnv+" to") {
			t.Errorf("the error should say to set %s: %v", TinyGoNetEnv, err)
		}
	})
	t.Run("fetched from the repository", func(t *testing.T) {
		dst := t.TempDir()
		if _, err := copyNet(ctx, "", "file://"+repo, pinned, dst); err != nil {
			t.Fatal(err)
		}
		checkNet(t, dst)
	})
}
