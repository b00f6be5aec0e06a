// Package bus is certbus's D-Bus face: the org.certbus.Dispatcher1 object the
// daemon exports (caller check, validation at the edge, journal, emit) and the
// client the hooks use to call it. It knows nothing of apps: accepted events
// leave through a signals.Signal.
package bus

import (
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/bus/wire"
)

// The names of the D-Bus contract (DESIGN section 2).
const (
	Name      = wire.Name
	Path      = dbus.ObjectPath(wire.Path)
	Interface = wire.Interface

	ErrInvalidArgument = "org.certbus.Dispatcher1.Error.InvalidArgument"
	ErrUnknownEvent    = "org.certbus.Dispatcher1.Error.UnknownEvent"
	ErrAccessDenied    = "org.freedesktop.DBus.Error.AccessDenied"
	// ErrShuttingDown: the daemon is stopping and takes no more events; the
	// hook spools the event for the next start.
	ErrShuttingDown = "org.certbus.Dispatcher1.Error.ShuttingDown"
	errFailed       = "org.freedesktop.DBus.Error.Failed"
)

// Connect opens a private connection to bus: "system", "session" or a D-Bus
// address such as unix:path=/run/x.
func Connect(bus string) (*dbus.Conn, error) {
	var (
		c   *dbus.Conn
		err error
	)
	switch bus {
	case "", "system":
		c, err = dbus.ConnectSystemBus()
	case "session":
		c, err = dbus.ConnectSessionBus()
	default:
		if !strings.Contains(bus, ":") {
			return nil, fmt.Errorf("bad bus %q: use system, session or a D-Bus address like unix:path=/run/dbus/system_bus_socket", bus)
		}
		c, err = dbus.Connect(bus)
	}
	if err != nil {
		return nil, &UnreachableError{Bus: bus, Err: err}
	}
	return c, nil
}

// UnreachableError means the daemon could not be reached at all: no bus, or
// the name is neither owned nor activatable. An event that meets it must be
// spooled.
type UnreachableError struct {
	Bus string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s on the %s bus: %v", Name, e.Bus, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// RejectedError is the daemon's (or the bus policy's) refusal of a call.
type RejectedError struct {
	Name    string // D-Bus error name
	Message string
}

func (e *RejectedError) Error() string { return e.Message }

// classify turns a godbus call error into UnreachableError, RejectedError or
// the error itself.
func classify(bus string, err error) error {
	var de dbus.Error
	var dep *dbus.Error
	if errors.As(err, &dep) {
		de = *dep
	} else if !errors.As(err, &de) {
		if errors.Is(err, dbus.ErrClosed) {
			return &UnreachableError{Bus: bus, Err: err}
		}
		return err
	}
	msg := de.Error()
	switch de.Name {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.Spawn.ServiceNotFound", "org.freedesktop.DBus.Error.Spawn.ChildExited",
		"org.freedesktop.DBus.Error.Spawn.Failed", "org.freedesktop.systemd1.NoSuchUnit",
		// The daemon died mid-call: it may or may not have journaled the
		// event. Spooling it again is safe (a deploy is idempotent); losing
		// it is not.
		"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Disconnected",
		ErrShuttingDown:
		return &UnreachableError{Bus: bus, Err: errors.New(msg)}
	case ErrInvalidArgument, ErrAccessDenied, ErrUnknownEvent:
		return &RejectedError{Name: de.Name, Message: msg}
	}
	return fmt.Errorf("%s: %s", de.Name, msg)
}
