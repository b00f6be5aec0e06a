package bus

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"
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
