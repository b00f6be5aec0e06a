package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

const (
	dispatcherName  = "org.certbus.Dispatcher1"
	dispatcherPath  = "/org/certbus/Dispatcher1"
	dispatcherIface = "org.certbus.Dispatcher1"
)

// whoAmI is a stand-in service: Ping answers with the uid the bus reports
// for the caller, which is what the real daemon checks.
type whoAmI struct{ conn *dbus.Conn }

func (w whoAmI) Ping(sender dbus.Sender) (string, *dbus.Error) {
	var uid uint32
	if err := w.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid); err != nil {
		return "", dbus.MakeFailedError(err)
	}
	return fmt.Sprintf("pong uid=%d", uid), nil
}

// serve owns name on b as root and exports whoAmI at dispatcherPath.
func serve(t *testing.T, b *Bus, name string) {
	t.Helper()
	conn := b.Connect(t)
	if err := conn.Export(whoAmI{conn}, dispatcherPath, dispatcherIface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil {
		t.Fatalf("root: request name %s: %v", name, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("root: request name %s: reply %v, want primary owner", name, reply)
	}
}

// dbusSend runs dbus-send on b as uid/gid 65534 with the given
// supplementary groups and returns its combined output and whether it
// succeeded.
func dbusSend(t *testing.T, b *Bus, groups []int, dest, path, method string, args ...string) (string, bool) {
	t.Helper()
	argv := append([]string{"--bus=" + b.Address, "--print-reply", "--dest=" + dest, path, method}, args...)
	out, err := AsUser(Nobody, Nobody, groups, "dbus-send", argv...).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("dbus-send: %v", err)
		}
	}
	return strings.TrimSpace(string(out)), err == nil
}

func needBusTools(t *testing.T) {
	NeedRoot(t)
	Need(t, "dbus-daemon", "dbus-send", "setpriv")
}

func TestBusShippedPolicy(t *testing.T) {
	needBusTools(t)
	certbusGID := EnsureGroup(t, "certbus") // before StartBus: see its doc
	b := StartBus(t, BusOptions{Policy: filepath.Join(RepoRoot(t), ShippedPolicy)})
	serve(t, b, dispatcherName)

	t.Run("root calls", func(t *testing.T) {
		var got string
		obj := b.Connect(t).Object(dispatcherName, dispatcherPath)
		if err := obj.Call(dispatcherIface+".Ping", 0).Store(&got); err != nil {
			t.Fatalf("root: Ping: %v", err)
		}
		if got != "pong uid=0" {
			t.Errorf("root: Ping = %q, want %q", got, "pong uid=0")
		}
	})
	t.Run("nobody connects", func(t *testing.T) {
		// The bus itself is open to everyone, so the denial below is the
		// policy's doing, not a socket the caller cannot reach.
		out, ok := dbusSend(t, b, nil, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.GetId")
		if !ok {
			t.Fatalf("nobody: GetId failed: %s", out)
		}
	})
	t.Run("nobody denied", func(t *testing.T) {
		out, ok := dbusSend(t, b, nil, dispatcherName, dispatcherPath, dispatcherIface+".Ping")
		if ok || !strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") {
			t.Fatalf("nobody: Ping: want AccessDenied, got ok=%v: %s", ok, out)
		}
	})
	t.Run("nobody cannot own", func(t *testing.T) {
		out, ok := dbusSend(t, b, nil, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName",
			"string:"+dispatcherName, "uint32:4")
		if ok || !strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") {
			t.Fatalf("nobody: RequestName: want AccessDenied, got ok=%v: %s", ok, out)
		}
	})
	t.Run("group certbus calls", func(t *testing.T) {
		// dbus-daemon takes a caller's groups from the socket credentials
		// (SO_PEERGROUPS), so a supplementary group set by setpriv counts.
		out, ok := dbusSend(t, b, []int{certbusGID}, dispatcherName, dispatcherPath, dispatcherIface+".Ping")
		if !ok || !strings.Contains(out, `"pong uid=65534"`) {
			t.Fatalf("nobody in group certbus: Ping: want pong, got ok=%v: %s", ok, out)
		}
	})
	if log := tail(b.LogFile, 1<<20); !strings.Contains(log, "Rejected send message") {
		t.Errorf("dbus-daemon log has no rejection:\n%s", log)
	}
}

func TestBusPermissive(t *testing.T) {
	needBusTools(t)
	b := StartBus(t, BusOptions{Policy: filepath.Join(RepoRoot(t), ShippedPolicy), Permissive: true})
	serve(t, b, dispatcherName)
	// The call reaches the service, which sees uid 65534: from here on only
	// the service's own check stands between nobody and Notify.
	out, ok := dbusSend(t, b, nil, dispatcherName, dispatcherPath, dispatcherIface+".Ping")
	if !ok || !strings.Contains(out, `"pong uid=65534"`) {
		t.Fatalf("nobody on a permissive bus: Ping: want pong, got ok=%v: %s", ok, out)
	}
}

// TestBusUnknownGroup pins down what dbus-daemon does with a <policy
// group="..."> naming a group that does not exist when it loads the
// configuration: it warns, starts anyway, and drops the block, so creating
// the group later changes nothing until the configuration is reloaded.
func TestBusUnknownGroup(t *testing.T) {
	needBusTools(t)
	Need(t, "groupadd", "groupdel")
	group := fmt.Sprintf("cbtest%d", os.Getpid())
	policy := filepath.Join(t.TempDir(), "test.conf")
	err := os.WriteFile(policy, []byte(fmt.Sprintf(`<busconfig>
  <policy user="root"><allow own="%[1]s"/></policy>
  <policy group="%[2]s"><allow send_destination="%[1]s"/></policy>
</busconfig>
`, dispatcherName, group)), 0o644)
	if err != nil {
		t.Fatal(err)
	}

	b := StartBus(t, BusOptions{Policy: policy})
	if log := tail(b.LogFile, 1<<20); !strings.Contains(log, `Unknown group "`+group+`"`) {
		t.Errorf("dbus-daemon did not warn about the unknown group; log:\n%s", log)
	}
	serve(t, b, dispatcherName)

	groupadd, _ := LookPath("groupadd")
	groupdel, _ := LookPath("groupdel")
	if out, err := exec.Command(groupadd, "--system", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(groupdel, group).CombinedOutput(); err != nil {
			t.Errorf("groupdel %s: %v: %s", group, err, out)
		}
	})
	gid := EnsureGroup(t, group) // exists now: only looks it up

	out, ok := dbusSend(t, b, []int{gid}, dispatcherName, dispatcherPath, dispatcherIface+".Ping")
	if ok || !strings.Contains(out, "AccessDenied") {
		t.Fatalf("group created after start: want AccessDenied, got ok=%v: %s", ok, out)
	}
	b.Reload(t)
	out, ok = dbusSend(t, b, []int{gid}, dispatcherName, dispatcherPath, dispatcherIface+".Ping")
	if !ok || !strings.Contains(out, `"pong uid=65534"`) {
		t.Fatalf("after reload: want pong, got ok=%v: %s", ok, out)
	}
}

func TestBusStop(t *testing.T) {
	Need(t, "dbus-daemon")
	b := StartBus(t, BusOptions{})
	pid := b.proc.cmd.Process.Pid
	b.Stop(t)
	if _, err := dbus.Connect(b.Address); err == nil {
		t.Fatal("connected to a stopped bus")
	}
	if exited, _ := b.proc.exited(); !exited {
		t.Fatalf("dbus-daemon pid %d still running after Stop", pid)
	}
	b.Stop(t) // idempotent
}

func TestBusExtra(t *testing.T) {
	Need(t, "dbus-daemon")
	const name = "org.certbus.TestExtra"
	for _, tt := range []struct {
		extra string
		want  dbus.RequestNameReply
	}{
		{"", 0}, // denied: the default policy lets nobody own anything
		{`<policy user="` + currentUser(t) + `"><allow own="` + name + `"/></policy>`, dbus.RequestNameReplyPrimaryOwner},
	} {
		b := StartBus(t, BusOptions{Extra: tt.extra})
		reply, err := b.Connect(t).RequestName(name, dbus.NameFlagDoNotQueue)
		if tt.want == 0 {
			if err == nil || !strings.Contains(err.Error(), "not allowed to own") {
				t.Errorf("without Extra: RequestName = %v, %v; want access denied", reply, err)
			}
		} else if err != nil || reply != tt.want {
			t.Errorf("with Extra: RequestName = %v, %v; want primary owner", reply, err)
		}
	}
}

func currentUser(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
