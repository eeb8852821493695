package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TinyGo keeps its net package (and net/http) in a repository of its own,
// which an official release bundles as src/net and the Go module proxy does
// not serve: compute-sdk-go imports net, so a TinyGo built from the proxy
// needs it copied in. The commit is the one TinyGo's own repository pins as
// its src/net submodule at TinyGoVersion.
const (
	TinyGoNetRepo   = "https://github.com/tinygo-org/net"
	TinyGoNetCommit = "b2d3a2b05bbf8eff71675811d377ac64a1e6533e"
	// TinyGoNetEnv names the variable that says where to take the net
	// package from instead of cloning TinyGoNetRepo (see copyTinyGoNet).
	TinyGoNetEnv = "TINYGO_NET"
)

// copyTinyGoNet writes TinyGo's net package at TinyGoNetCommit into dst,
// from $TINYGO_NET when set, which may be:
//
//   - the package itself: a directory holding its .go files;
//   - a git repository of it (a clone: a directory with .git);
//   - a directory of snapshots named net-<commit prefix>/ (the one whose
//     prefix TinyGoNetCommit starts with) and/or git bundles (*.bundle);
//   - a git bundle of the repository (a file).
//
// Without TINYGO_NET it fetches the commit from TinyGoNetRepo with git; the
// error then says to set TINYGO_NET, as that is what to do offline. It
// returns a description of the source, for progress messages.
func copyTinyGoNet(ctx context.Context, dst string) (string, error) {
	return copyNet(ctx, os.Getenv(TinyGoNetEnv), TinyGoNetRepo, TinyGoNetCommit, dst)
}

// copyNet is copyTinyGoNet with the source (the value of TINYGO_NET), the
// repository and the commit as parameters.
func copyNet(ctx context.Context, src, repo, commit, dst string) (string, error) {
	if src == "" {
		if err := fetchNet(ctx, repo, commit, dst); err != nil {
			return "", fmt.Errorf("fetching TinyGo's net package (%s at %.7s), which no package registry serves: %w\n"+
				"set %s to a directory holding it (or holding net-<commit>/ snapshots), a clone of the repository, or a git bundle of it",
				repo, commit, err, TinyGoNetEnv)
		}
		return repo + " at " + commit[:7], nil
	}
	from, err := netFrom(ctx, src, commit, dst)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", TinyGoNetEnv, src, err)
	}
	return from, nil
}

func netFrom(ctx context.Context, src, commit, dst string) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return src, fromGit(ctx, src, true, commit, dst)
	}
	if _, err := os.Stat(filepath.Join(src, ".git")); err == nil {
		return src, fromGit(ctx, src, false, commit, dst)
	}
	if isNetPackage(src) {
		return src, copyDir(src, dst)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	var bundles []string
	for _, e := range entries {
		name := e.Name()
		prefix, ok := strings.CutPrefix(name, "net-")
		if e.IsDir() && ok && len(prefix) >= 7 && strings.HasPrefix(commit, prefix) {
			snap := filepath.Join(src, name)
			if !isNetPackage(snap) {
				return "", fmt.Errorf("%s is not TinyGo's net package (no .go file of package net)", snap)
			}
			return snap, copyDir(snap, dst)
		}
		if !e.IsDir() && strings.HasSuffix(name, ".bundle") {
			bundles = append(bundles, filepath.Join(src, name))
		}
	}
	var errs []error
	for _, b := range bundles {
		err := fromGit(ctx, b, true, commit, dst)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return "", fmt.Errorf("it holds neither TinyGo's net package, nor a snapshot net-%.7s/, nor a git bundle (*.bundle)", commit)
}

// isNetPackage reports whether dir holds a .go file of package net.
func isNetPackage(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && (bytes.HasPrefix(b, []byte("package net\n")) || bytes.Contains(b, []byte("\npackage net\n"))) {
			return true
		}
	}
	return false
}

// fromGit extracts commit from a git repository or, with bundle, a git
// bundle file.
func fromGit(ctx context.Context, repo string, bundle bool, commit, dst string) error {
	gitDir := repo
	if bundle {
		tmp, err := os.MkdirTemp("", "tinygo-net-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		// --mirror: every ref, not only branches, in case the commit is
		// reachable only from a tag or a pull request's head.
		if err := git(ctx, "", "clone", "--quiet", "--mirror", repo, tmp); err != nil {
			return err
		}
		gitDir = tmp
	}
	return archive(ctx, gitDir, commit, dst)
}

// fetchNet fetches commit alone from the repository at url.
func fetchNet(ctx context.Context, url, commit, dst string) error {
	tmp, err := os.MkdirTemp("", "tinygo-net-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := git(ctx, tmp, "init", "--quiet", "--bare"); err != nil {
		return err
	}
	if err := git(ctx, tmp, "fetch", "--quiet", "--depth=1", url, commit); err != nil {
		return err
	}
	return archive(ctx, tmp, commit, dst)
}

// archive writes commit's tree from the repository at dir into dst.
func archive(ctx context.Context, dir, commit, dst string) error {
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "archive", "--format=tar", commit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	xerr := untar(out, dst)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %.7s in %s: %v: %s", commit, dir, err, strings.TrimSpace(stderr.String()))
	}
	return xerr
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	// Never ask for credentials: a build has no one to answer.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// untar writes a tar stream's directories and regular files under dst.
func untar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("archive entry %q leaves its directory", h.Name)
		}
		path := filepath.Join(dst, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// copyDir copies the directories and regular files under src to dst,
// writable (the module cache's are read-only), leaving out .git.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm()|0o200)
	})
}
