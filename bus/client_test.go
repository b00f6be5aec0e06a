package bus

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/internal/testutil"
)

// stub stands in for the daemon's object.
type stub struct{}

func (stub) Notify(op string, domains map[string]map[string]string) (string, *dbus.Error) {
	if op == "nameless" {
		return "", &dbus.Error{Name: ErrInvalidArgument}
	}
	return "id-" + op, nil
}

func TestNotifyRoutes(t *testing.T) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	conn := b.Connect(t)
	if err := conn.Export(stub{}, Path, Interface); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(Name, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: %v %v", reply, err)
	}
	ctx := context.Background()
	gone := "unix:path=" + filepath.Join(t.TempDir(), "gone")

	// An address listing a dead socket first: godbus tries the next one.
	if id, err := Notify(ctx, gone+";"+b.Address, "pre", nil); err != nil || id != "id-pre" {
		t.Errorf("two-entry address: %q, %v; want delivered through the second entry", id, err)
	}
	// No bus at all: unreachable, so the hook spools.
	var ue *UnreachableError
	if _, err := Notify(ctx, gone, "pre", nil); !errors.As(err, &ue) {
		t.Errorf("no bus: %v, want UnreachableError", err)
	}
	// A call that cannot be encoded is not a daemon that cannot be
	// reached: spooling it would not help.
	if _, err := Notify(ctx, b.Address, "deploy", map[string]map[string]string{"a\xff": {}}); err == nil || errors.As(err, &ue) {
		t.Errorf("unencodable call: %v, want a plain error", err)
	}
	// A refusal without a message still says what it is.
	var re *RejectedError
	if _, err := Notify(ctx, b.Address, "nameless", nil); !errors.As(err, &re) || re.Message == "" {
		t.Errorf("refusal without a message: %#v, want a RejectedError with a message", err)
	}
}

// Every answer that is not a refusal, and no answer before the deadline,
// is an event the daemon did not take: the hook spools it. Only the
// daemon's or the policy's no, a cancel and an event that cannot be
// encoded are not.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // unreachable, rejected or plain
	}{
		{"service unknown", dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, "unreachable"},
		{"activation timed out", &dbus.Error{Name: "org.freedesktop.DBus.Error.TimedOut", Body: []any{"Activation of org.certbus.Dispatcher1 timed out"}}, "unreachable"},
		{"activated process killed", dbus.Error{Name: "org.freedesktop.DBus.Error.Spawn.ChildSignaled"}, "unreachable"},
		{"activated binary missing", dbus.Error{Name: "org.freedesktop.DBus.Error.Spawn.ExecFailed"}, "unreachable"},
		{"unit masked", dbus.Error{Name: "org.freedesktop.systemd1.UnitMasked"}, "unreachable"},
		{"daemon could not journal", dbus.Error{Name: "org.certbus.Dispatcher1.Error.Failed", Body: []any{"journal event: disk full"}}, "unreachable"},
		{"daemon stopping", dbus.Error{Name: ErrShuttingDown}, "unreachable"},
		{"died mid-call", dbus.Error{Name: "org.freedesktop.DBus.Error.NoReply"}, "unreachable"},
		{"no answer before the deadline", context.DeadlineExceeded, "unreachable"},
		{"connection closed", dbus.ErrClosed, "unreachable"},
		{"invalid event", dbus.Error{Name: ErrInvalidArgument, Body: []any{"domain a.test: expired"}}, "rejected"},
		{"caller refused", &dbus.Error{Name: ErrAccessDenied}, "rejected"},
		{"unknown event", dbus.Error{Name: ErrUnknownEvent}, "rejected"},
		{"cancelled", context.Canceled, "plain"},
		{"not encodable", errors.New(`"a\xff" is not a D-Bus string`), "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("system", tt.err)
			var ue *UnreachableError
			var re *RejectedError
			got := "plain"
			switch {
			case errors.As(err, &ue):
				got = "unreachable"
			case errors.As(err, &re):
				got = "rejected"
			}
			if got != tt.want {
				t.Errorf("classify(%v) = %T %v, want %s", tt.err, err, err, tt.want)
			}
			if ue != nil {
				if de, ok := tt.err.(dbus.Error); ok && !strings.Contains(err.Error(), de.Name) {
					t.Errorf("%v does not name %s", err, de.Name)
				}
			}
		})
	}
}
