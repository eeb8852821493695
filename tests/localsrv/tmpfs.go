package localsrv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes, mode 0700, on a new temporary
// directory of t and returns it; it is unmounted when t ends. It is a
// real disk that fills: a write past size fails with ENOSPC, as on a
// full disk, which a file size limit (EFBIG) does not show. Mounting
// needs root (CAP_SYS_ADMIN): without it the test is skipped, saying so.
func Tmpfs(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("a full disk is a small tmpfs here, and mounting one failed (it needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes the file name until the file system it is on has no room
// left (ENOSPC), and returns the bytes written; remove the file to free
// them.
func Fill(t testing.TB, name string) int64 {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
