// Package bus is certbus's D-Bus face: the org.certbus.Dispatcher1 object the
// daemon exports (caller check, validation at the edge, journal, emit) and the
// client the hooks use to call it. It knows nothing of apps: accepted events
// leave through a signals.Signal.
package bus

import (
	"context"
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

// UnreachableError means the daemon did not take the call, and said no
// "no" either: no bus, a name neither owned nor activatable, an activation
// that failed or timed out, a daemon that died mid-call, did not answer
// before the deadline or could not record the event. An event that meets
// it must be spooled: nothing is lost, and a deploy delivered twice
// changes nothing.
type UnreachableError struct {
	Bus string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot deliver to %s on the %s bus: %v", Name, e.Bus, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// RejectedError is the daemon's (or the bus policy's) refusal of a call.
type RejectedError struct {
	Name    string // D-Bus error name
	Message string
}

func (e *RejectedError) Error() string { return e.Message }

// classify turns a call's error into RejectedError (the daemon or the bus
// policy said no: the same event would meet the same answer),
// UnreachableError (anything else that is an answer from the bus, or none
// before the deadline: spool it) or the error itself (the call could not be
// made at all, such as an event that cannot be encoded).
func classify(bus string, err error) error {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &dep):
		de = *dep
	case errors.As(err, &de):
	case errors.Is(err, dbus.ErrClosed):
		return &UnreachableError{Bus: bus, Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		// A daemon that starts slower than the bus's activation timeout,
		// is stopping, or hangs. It may have the event: a second
		// delivery changes nothing, a lost one does.
		return &UnreachableError{Bus: bus, Err: fmt.Errorf("no answer before the deadline: %w", err)}
	default:
		return err
	}
	switch de.Name {
	case ErrInvalidArgument, ErrAccessDenied, ErrUnknownEvent:
		return &RejectedError{Name: de.Name, Message: de.Error()}
	}
	// Not a refusal: ServiceUnknown, a failed or timed-out activation
	// (Spawn.*, TimedOut, systemd's), a daemon that died mid-call
	// (NoReply, Disconnected), is shutting down or could not journal the
	// event (Failed), an older daemon's UnknownMethod...
	text := de.Name
	if msg := de.Error(); msg != de.Name {
		text += ": " + msg
	}
	return &UnreachableError{Bus: bus, Err: errors.New(text)}
}
