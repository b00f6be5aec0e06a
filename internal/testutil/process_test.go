package testutil

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test binary re-run with this variable set plays a daemon that ignores
// SIGTERM (see TestMain).
const helperEnv = "CERTBUS_TESTUTIL_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// signalOf returns the signal that ended a process, or 0.
func signalOf(err error) syscall.Signal {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

func TestProcessStoppedAtCleanup(t *testing.T) {
	t.Parallel()
	var p *process
	t.Run("test", func(t *testing.T) {
		p = startProcess(t, "sleep", exec.Command("sleep", "60"), filepath.Join(t.TempDir(), "log"))
		if exited, err := p.exited(); exited {
			t.Fatalf("sleep exited at once: %v", err)
		}
	})
	exited, err := p.exited()
	if !exited || signalOf(err) != syscall.SIGTERM {
		t.Errorf("after cleanup: exited %v, %v; want ended by SIGTERM", exited, err)
	}
	// The PID is reaped, and nothing is signalled twice.
	p.stop(t)
}

func TestProcessKilledIfTermIgnored(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 5s SIGTERM grace period")
	}
	t.Parallel()
	var p *process
	var stopped time.Time
	t.Run("test", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=ignore-term")
		p = startProcess(t, "stubborn", cmd, log)
		WaitFor(t, 10*time.Second, func() bool { return strings.Contains(tail(log, 100), "ready") }, "helper to ignore SIGTERM")
		t.Cleanup(func() { stopped = time.Now() }) // runs just before p's
	})
	exited, err := p.exited()
	if !exited || signalOf(err) != syscall.SIGKILL {
		t.Errorf("after cleanup: exited %v, %v; want ended by SIGKILL", exited, err)
	}
	if d := time.Since(stopped); d < 4*time.Second {
		t.Errorf("SIGKILL came %v after SIGTERM, want about 5s", d)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("first line\nsecond line\nthird\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tail(path, 15); got != "third\n" {
		t.Errorf("tail 15 = %q, want whole lines only", got)
	}
	if got := tail(path, 1000); got != "first line\nsecond line\nthird\n" {
		t.Errorf("tail 1000 = %q", got)
	}
}
