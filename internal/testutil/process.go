package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a long-running program a helper started. It is stopped by its
// PID only: no process group, no name matching, so a helper never touches a
// process it did not start.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string // where its output went; shown when the test fails

	done     chan struct{} // closed once cmd.Wait returned
	waitErr  error
	stopOnce sync.Once
}

// startProcess starts cmd, sending whichever of its stdout and stderr is
// unset to logPath, and registers a cleanup that stops exactly cmd's PID. The
// child also gets SIGKILL if the test binary dies without running cleanups
// (go test's -timeout panics and exits without them).
func startProcess(t testing.TB, name string, cmd *exec.Cmd, logPath string) *process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	defer logFile.Close() // the child has its own copy
	if cmd.Stdout == nil {
		cmd.Stdout = logFile
	}
	if cmd.Stderr == nil {
		cmd.Stderr = logFile
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	// Waiting from the start reaps the child as soon as it exits, and the
	// done channel tells stop not to signal a PID that may have been reused.
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Logf("started %s (pid %d): %s", name, cmd.Process.Pid, cmd.String())
	t.Cleanup(func() { p.stop(t) })
	return p
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process, then SIGKILL if it is still running
// after five seconds, and waits for it. It is idempotent. If the process had
// died on its own, or the test failed, it shows the end of its log.
func (p *process) stop(t testing.TB) {
	p.stopOnce.Do(func() {
		early, err := p.exited()
		if !early {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				t.Logf("%s (pid %d) ignored SIGTERM for 5s; sending SIGKILL", p.name, p.cmd.Process.Pid)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if early {
			t.Logf("%s (pid %d) had exited before the test ended: %v", p.name, p.cmd.Process.Pid, err)
		}
		if early || t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", p.name, p.logPath, tail(p.logPath, 4096))
		}
	})
}

// tail returns the last lines of the file at path, up to n bytes.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(fi.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(%v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
