package apps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// UnitReloader reloads or restarts a systemd unit over D-Bus and waits for
// the job's result. Every mode acts only on a running unit ("try"), so a
// stopped daemon is never started by a certificate renewal.
type UnitReloader struct {
	Unit  string
	Mode  string
	Units func(ctx context.Context) (UnitController, error)
}

// Name describes the method.
func (u *UnitReloader) Name() string { return "systemd " + u.Mode + " " + u.Unit }

// Reload runs the job.
func (u *UnitReloader) Reload(ctx context.Context, _ RunInfo) error {
	if u.Units == nil {
		return errors.New("no systemd connection available (set reload.command on a host without systemd)")
	}
	c, err := u.Units(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	return c.Run(ctx, u.Unit, u.Mode)
}

// CommandReloader runs a command: argv, no shell, with the event in its
// environment. Its output is kept for the error message.
type CommandReloader struct {
	Argv []string
	// Label overrides Name (e.g. "ejabberdctl reload_config").
	Label string
}

// Name describes the method.
func (c *CommandReloader) Name() string {
	if c.Label != "" {
		return c.Label
	}
	return "command " + strings.Join(c.Argv, " ")
}

// Reload runs the command until it exits or ctx ends.
func (c *CommandReloader) Reload(ctx context.Context, run RunInfo) error {
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(os.Environ(),
		"CERTBUS_EVENT_ID="+run.EventID,
		"CERTBUS_OPERATION="+run.Operation,
		"CERTBUS_DOMAINS="+strings.Join(run.Domains, " "),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A daemon the command forks must not keep our pipes open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2e9
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: timed out: %w", c.Name(), ctx.Err())
		}
		if o := tail(out.String(), 600); o != "" {
			return fmt.Errorf("%s: %v: %s", c.Name(), err, o)
		}
		return fmt.Errorf("%s: %v", c.Name(), err)
	}
	return nil
}

// SignalReloader sends a signal to the process named by a PID file.
type SignalReloader struct {
	PIDFile string
	Signal  syscall.Signal
	// PID, when set, finds the process instead of PIDFile (a unit's MainPID).
	PID func(ctx context.Context) (int, error)
}

// Name describes the method.
func (s *SignalReloader) Name() string {
	if s.PIDFile != "" {
		return fmt.Sprintf("signal %s to %s", signalName(s.Signal), s.PIDFile)
	}
	return "signal " + signalName(s.Signal)
}

// Reload sends the signal.
func (s *SignalReloader) Reload(ctx context.Context, _ RunInfo) error {
	var pid int
	var err error
	if s.PID != nil {
		pid, err = s.PID(ctx)
	} else {
		pid, err = ReadPIDFile(s.PIDFile)
	}
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, s.Signal); err != nil {
		return fmt.Errorf("send %s to pid %d: %w", signalName(s.Signal), pid, err)
	}
	return nil
}

// ReadPIDFile reads a PID file and checks the process exists.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds no valid pid", path)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, fmt.Errorf("process %d of %s: %w (is the daemon running?)", pid, path, err)
	}
	return pid, nil
}

var signalNames = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGWINCH": syscall.SIGWINCH,
}

// ParseSignal parses "SIGHUP", "HUP" or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	u := strings.ToUpper(s)
	if !strings.HasPrefix(u, "SIG") {
		u = "SIG" + u
	}
	if sig, ok := signalNames[u]; ok {
		return sig, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q (use SIGHUP, SIGUSR1, SIGUSR2, ...)", s)
}

func signalName(sig syscall.Signal) string {
	for n, s := range signalNames {
		if s == sig {
			return n
		}
	}
	return strconv.Itoa(int(sig))
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
