package bus

import (
	"context"
	"errors"
	"path/filepath"
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
