// Package systemd is the one place where certbus controls systemd units: it
// asks systemd over D-Bus (org.freedesktop.systemd1) to restart or reload a
// unit, waits for the job's result, and reads the few unit properties that
// apps need to tell whether a daemon really restarted.
//
// It only ever uses the "try" forms: a unit that is not running stays
// stopped, because a stopped daemon reads the new files when it next starts
// and certbus must not start services an administrator stopped. It does not
// decide which units to act on, retry, or fall back; apps do.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Mode is how Run acts on a unit. The zero Mode is invalid.
type Mode int

const (
	// Restart restarts the unit if it is running (TryRestartUnit, the
	// D-Bus side of "systemctl try-restart"); a stopped unit stays stopped.
	Restart Mode = iota + 1
	// Reload reloads the unit (ReloadUnit) if its ActiveState is active,
	// reloading or activating; otherwise it does nothing and Run returns nil,
	// the same as systemd does for a try-restart of a stopped unit. systemd
	// has no try-reload call, so this is a check followed by the call: a unit
	// that stops in between gets a reload job that ends "invalid", which Run
	// reports. A unit that cannot reload fails (use ReloadOrRestart).
	Reload
	// ReloadOrRestart reloads the unit if it supports reloading and
	// restarts it otherwise, only if it is running (ReloadOrTryRestartUnit,
	// "systemctl try-reload-or-restart").
	ReloadOrRestart
)

// ParseMode turns the config spelling of a mode ("restart", "reload",
// "reload-or-restart") into a Mode.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Restart, Reload, ReloadOrRestart} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown reload mode %q (want restart, reload or reload-or-restart)", s)
}

// String returns the config spelling of m.
func (m Mode) String() string {
	switch m {
	case Restart:
		return "restart"
	case Reload:
		return "reload"
	case ReloadOrRestart:
		return "reload-or-restart"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// verb is what m does, spelled like the systemctl command, for messages.
func (m Mode) verb() string {
	switch m {
	case Restart:
		return "try-restart"
	case ReloadOrRestart:
		return "try-reload-or-restart"
	}
	return m.String()
}

// JobError reports a systemd job that ended with a result other than
// "done": "failed", "timeout", "canceled", "dependency", "skipped",
// "invalid" (reload of a unit that is not active), or a newer one.
// For a failed job it carries the unit's state just afterwards, when it
// could be read.
type JobError struct {
	Unit        string
	Mode        Mode
	Result      string
	ActiveState string // empty unless Result is "failed" and it could be read
	SubState    string
}

// Error says which unit, what was done, and how the job ended.
func (e *JobError) Error() string {
	msg := fmt.Sprintf("%s %s: job ended with result %q", e.Mode.verb(), e.Unit, e.Result)
	if e.ActiveState != "" {
		msg += fmt.Sprintf(" (unit is now %s/%s)", e.ActiveState, e.SubState)
	}
	return msg
}

// Manager talks to systemd over one D-Bus connection. It is safe for
// concurrent use; Close it when done.
type Manager struct {
	conn   *sddbus.Conn
	cancel context.CancelFunc
}

// Connect connects to systemd on the system bus (DBUS_SYSTEM_BUS_ADDRESS if
// set). ctx bounds only the connecting, not the connection's life.
func Connect(ctx context.Context) (*Manager, error) {
	m, err := connect(ctx, dbus.ConnectSystemBus)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd on the system bus: %w", err)
	}
	return m, nil
}

// ConnectAddress connects to whatever owns org.freedesktop.systemd1 on the
// bus at address, a D-Bus address such as "unix:path=/run/dbus/x". Tests use
// it; ctx bounds only the connecting.
func ConnectAddress(ctx context.Context, address string) (*Manager, error) {
	m, err := connect(ctx, func(opts ...dbus.ConnOption) (*dbus.Conn, error) {
		return dbus.Connect(address, opts...)
	})
	if err != nil {
		return nil, fmt.Errorf("connect to systemd on %s: %w", address, err)
	}
	return m, nil
}

// connect opens go-systemd's pair of connections (one for calls, one for
// signals) with dial. godbus closes a connection when the context it was
// given ends, so the connections get their own context, cancelled by Close,
// and ctx is only allowed to interrupt the dialling.
func connect(ctx context.Context, dial func(...dbus.ConnOption) (*dbus.Conn, error)) (*Manager, error) {
	connCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) {
		return dial(dbus.WithContext(connCtx))
	})
	interrupted := !stop()
	if err == nil && interrupted {
		conn.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &Manager{conn: conn, cancel: cancel}, nil
}

// Close closes the connection. Jobs already queued keep running in systemd.
func (m *Manager) Close() {
	m.conn.Close()
	m.cancel()
}

// Run acts on unit as mode says (see Mode) and waits for systemd's job to
// finish. It returns nil when the job ends "done" (or, for Reload, when the
// unit was not active and nothing was done), a *JobError when the job ends
// otherwise, and an error naming the unit when systemd refuses the call (no
// such unit, unit cannot reload...) or ctx ends first. A job still running
// when ctx ends is left to finish in systemd: cancelling a half-done
// restart could leave the daemon stopped.
func (m *Manager) Run(ctx context.Context, unit string, mode Mode) error {
	if unit == "" {
		return errors.New("run systemd job: empty unit name")
	}
	// Buffered: go-systemd delivers the result from its signal loop and
	// blocks on a full channel, and nobody reads it if ctx ends first.
	done := make(chan string, 1)
	var err error
	switch mode {
	case Restart:
		_, err = m.conn.TryRestartUnitContext(ctx, unit, "replace", done)
	case ReloadOrRestart:
		_, err = m.conn.ReloadOrTryRestartUnitContext(ctx, unit, "replace", done)
	case Reload:
		var st unitState
		st, err = m.state(ctx, unit)
		if err != nil {
			return fmt.Errorf("%s %s: %w", mode.verb(), unit, err)
		}
		if st.load == "not-found" {
			return fmt.Errorf("%s %s: unit not found", mode.verb(), unit)
		}
		switch st.active {
		case "active", "reloading", "activating":
			_, err = m.conn.ReloadUnitContext(ctx, unit, "replace", done)
		default:
			return nil
		}
	default:
		return fmt.Errorf("run systemd job for %s: unknown mode %v", unit, mode)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", mode.verb(), unit, err)
	}
	select {
	case result := <-done:
		if result == "done" {
			return nil
		}
		jerr := &JobError{Unit: unit, Mode: mode, Result: result}
		if result == "failed" {
			if st, err := m.state(ctx, unit); err == nil {
				jerr.ActiveState, jerr.SubState = st.active, st.sub
			}
		}
		return jerr
	case <-ctx.Done():
		return fmt.Errorf("%s %s: wait for job: %w", mode.verb(), unit, context.Cause(ctx))
	}
}

// unitState is the part of a unit's state that Run looks at.
type unitState struct {
	load, active, sub string
}

func (m *Manager) state(ctx context.Context, unit string) (unitState, error) {
	props, err := m.conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return unitState{}, fmt.Errorf("read unit state: %w", err)
	}
	var st unitState
	st.load, _ = props["LoadState"].(string)
	st.active, _ = props["ActiveState"].(string)
	st.sub, _ = props["SubState"].(string)
	return st, nil
}

// ActiveEnterTimestamp returns when unit last entered the active state, the
// zero Time if it never did. A restart moves it; a reload does not.
func (m *Manager) ActiveEnterTimestamp(ctx context.Context, unit string) (time.Time, error) {
	p, err := m.conn.GetUnitPropertyContext(ctx, unit, "ActiveEnterTimestamp")
	if err != nil {
		return time.Time{}, fmt.Errorf("read ActiveEnterTimestamp of %s: %w", unit, err)
	}
	usec, ok := p.Value.Value().(uint64)
	if !ok {
		return time.Time{}, fmt.Errorf("read ActiveEnterTimestamp of %s: unexpected type %s", unit, p.Value.Signature())
	}
	if usec == 0 {
		return time.Time{}, nil
	}
	return time.UnixMicro(int64(usec)), nil
}

// MainPID returns the PID of the main process of the service unit, 0 if it
// has none (not running).
func (m *Manager) MainPID(ctx context.Context, unit string) (int, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, unit, "MainPID")
	if err != nil {
		return 0, fmt.Errorf("read MainPID of %s: %w", unit, err)
	}
	pid, ok := p.Value.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("read MainPID of %s: unexpected type %s", unit, p.Value.Signature())
	}
	return int(pid), nil
}
