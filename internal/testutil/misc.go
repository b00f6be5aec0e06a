package testutil

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// RepoRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (go test runs a test in its
// package's directory). Tests use it to reach shipped files such as
// packaging/dbus/org.certbus.Dispatcher1.conf.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("repo root: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("repo root: no go.mod in %s or any parent", dir)
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before FreePort returns, so another process may take it
// first; the programs these tests start fail loudly when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every 20ms until it returns true, and fails the test
// naming what it waited for if that does not happen within timeout. cond runs
// on the caller's goroutine, so it may itself call t.Fatal (e.g. when the
// process it waits for has died).
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
