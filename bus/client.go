package bus

import (
	"context"
	"errors"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/bus/wire"
)

// Client calls the daemon. It is what `certbus hook` and `status` use.
type Client struct {
	bus  string
	conn *dbus.Conn
	obj  dbus.BusObject
}

// Dial connects to the daemon's bus. It does not check that the daemon runs:
// the first call does, and starts it by bus activation where that is set up.
func Dial(bus string) (*Client, error) {
	conn, err := Connect(bus)
	if err != nil {
		return nil, err
	}
	if bus == "" {
		bus = "system"
	}
	return &Client{bus: bus, conn: conn, obj: conn.Object(Name, Path)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Notify sends one event and returns its id. Errors are *UnreachableError
// (spool it), *RejectedError (the daemon or the policy said no) or other
// failures.
func (c *Client) Notify(ctx context.Context, operation string, domains map[string]map[string]string) (string, error) {
	if domains == nil {
		domains = map[string]map[string]string{}
	}
	var id string
	err := c.obj.CallWithContext(ctx, Interface+".Notify", 0, operation, domains).Store(&id)
	if err != nil {
		return "", classify(c.bus, err)
	}
	return id, nil
}

// Wait waits up to timeout for the apps to process event id.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) ([]Result, error) {
	ms := uint32(timeout / time.Millisecond)
	var res []Result
	err := c.obj.CallWithContext(ctx, Interface+".Wait", 0, id, ms).Store(&res)
	if err != nil {
		return nil, classify(c.bus, err)
	}
	return res, nil
}

// Notify delivers one event on a connection of its own and returns its id.
// The whole exchange goes out before any answer (package wire), so a hook
// pays one round trip to the bus; where that cannot work (an address with
// no unix socket, a first unix socket that cannot be reached, a bus that
// does not take EXTERNAL or refuses Hello) nothing was sent and it dials
// with godbus instead, which also tries an address's other entries. Errors
// are those of Client.Notify.
func Notify(ctx context.Context, bus, operation string, domains map[string]map[string]string) (string, error) {
	if bus == "" {
		bus = "system"
	}
	id, err := wire.Notify(ctx, bus, operation, domains)
	var we *wire.Error
	var se *wire.SentError
	switch {
	case err == nil:
		return id, nil
	case errors.As(err, &we):
		de := dbus.Error{Name: we.Name}
		if we.Message != "" {
			de.Body = []any{we.Message}
		}
		return "", classify(bus, de)
	case errors.Is(err, wire.ErrNotSent):
		c, err := Dial(bus)
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.Notify(ctx, operation, domains)
	case errors.As(err, &se):
		// The line dropped after the call went out: the daemon may have
		// journaled it, but spooling it again is safe (a deploy is
		// idempotent) and losing it is not.
		return "", &UnreachableError{Bus: bus, Err: err}
	default:
		// The deadline (spool it), a cancel or a call that cannot be
		// encoded (not delivered, and spooling would not help).
		return "", classify(bus, err)
	}
}
