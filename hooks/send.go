package hooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certbus/certbus/bus"
)

// Delivery is what happened to one hook event.
type Delivery struct {
	EventID string       // set when the daemon took it
	Spooled string       // the spool file, when the daemon could not be reached
	Reason  error        // why it was spooled
	Results []bus.Result // with wait
}

// Failed lists the apps that failed, from Results.
func (d *Delivery) Failed() []bus.Result {
	var out []bus.Result
	for _, r := range d.Results {
		if r.Status == "failed" {
			out = append(out, r)
		}
	}
	return out
}

// SendOptions say where and how to deliver.
type SendOptions struct {
	Bus string
	// StateDir finds the spool's directory; it is called only when the
	// event has to be spooled, so a delivery never pays for reading config.
	StateDir func() string
	Wait     bool
	Timeout  time.Duration
	// SpoolNow spools the event without trying the daemon, for this
	// reason (certbus-hook's call got no answer before its deadline:
	// trying again would wait as long).
	SpoolNow error
}

// Send delivers an event to the daemon; if the daemon does not take it
// (bus.UnreachableError: not reached, no answer before the timeout, an
// error that is not a refusal) it spools the event instead
// (Delivery.Spooled). A refusal comes back
// as *bus.RejectedError and nothing is spooled: the same event would be
// refused again.
func Send(ctx context.Context, o SendOptions, op string, domains Domains) (*Delivery, error) {
	if o.SpoolNow != nil {
		return spool(o, op, domains, o.SpoolNow)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var err error
	if !o.Wait {
		var id string
		if id, err = bus.Notify(ctx, o.Bus, op, domains); err == nil {
			return &Delivery{EventID: id}, nil
		}
	} else {
		var c *bus.Client
		if c, err = bus.Dial(o.Bus); err == nil {
			defer c.Close()
			var id string
			if id, err = c.Notify(ctx, op, domains); err == nil {
				d := &Delivery{EventID: id}
				// Ask the daemon to answer a little before our own
				// deadline, so that slow apps come back as "pending"
				// rather than as a timed-out call.
				wait := time.Until(deadline(ctx))
				wait -= min(wait/10, 2*time.Second)
				d.Results, err = c.Wait(ctx, id, wait)
				if err != nil {
					// Delivered: whatever Wait met, nothing is to
					// be spooled, and "cannot deliver" would mislead.
					var ue *bus.UnreachableError
					if errors.As(err, &ue) {
						err = ue.Err
					}
					return d, fmt.Errorf("wait for event %s: %w", id, err)
				}
				return d, nil
			}
		}
	}
	var ue *bus.UnreachableError
	if !errors.As(err, &ue) {
		return nil, err
	}
	return spool(o, op, domains, err)
}

func spool(o SendOptions, op string, domains Domains, reason error) (*Delivery, error) {
	p, err := Spool(o.StateDir(), op, domains)
	if err != nil {
		return nil, fmt.Errorf("%v; and spooling failed too: %w", reason, err)
	}
	return &Delivery{Spooled: p, Reason: reason}, nil
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}
