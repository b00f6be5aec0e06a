package systemd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/certbus/certbus/internal/testutil"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// startBus starts a private dbus-daemon for the test and returns its
// address. The daemon is killed by its PID when the test ends.
func startBus(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		testutil.Missing(t, "dbus-daemon is not installed (apt-get install dbus)")
	}
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dbus-daemon stderr:\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read dbus-daemon address: %v", err)
	}
	return strings.TrimSpace(line)
}

// fakeUnit is a unit as the fake systemd reports it.
type fakeUnit struct {
	load, active, sub string
	result            string        // what its jobs end with
	delay             time.Duration // how long its jobs take
	activeEnter       uint64        // µs since the epoch
	mainPID           uint32
}

// fakeSystemd serves, on a private bus, the part of systemd's D-Bus API that
// Manager uses: the job calls on org.freedesktop.systemd1.Manager, each
// answered with a job path and later a JobRemoved signal, and the unit
// properties. It is a fake because systemd cannot run here (these machines
// are not booted with systemd, and it refuses to run as anything but PID 1
// or a user instance of a booted system); it proves the mapping of modes to
// calls and the handling of job results, and the system test, which boots
// systemd in a namespace, proves the real path.
type fakeSystemd struct {
	conn *dbus.Conn

	mu    sync.Mutex
	units map[string]*fakeUnit
	calls []string // "Method unit mode", in order
	jobs  uint32
}

const managerIface = "org.freedesktop.systemd1.Manager"

func newFakeSystemd(t *testing.T, address string, units map[string]*fakeUnit) *fakeSystemd {
	t.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		t.Fatalf("connect fake systemd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeSystemd{conn: conn, units: units}
	if err := conn.Export(managerMethods{f}, "/org/freedesktop/systemd1", managerIface); err != nil {
		t.Fatal(err)
	}
	for name := range units {
		path := dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + sddbus.PathBusEscape(name))
		if err := conn.Export(unitProperties{f, name}, path, "org.freedesktop.DBus.Properties"); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := conn.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v, %v", reply, err)
	}
	return f
}

// job records a call and, for a known unit, queues a job that ends after
// the unit's delay with the unit's result.
func (f *fakeSystemd) job(method, unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method+" "+unit+" "+mode)
	u, ok := f.units[unit]
	if !ok || u.load == "not-found" {
		return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + unit + " not found."})
	}
	f.jobs++
	id := f.jobs
	path := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	result, delay := u.result, u.delay
	// Like systemd, the signal goes out after the reply; go-systemd copes
	// with either order.
	time.AfterFunc(delay, func() {
		_ = f.conn.Emit("/org/freedesktop/systemd1", managerIface+".JobRemoved", id, path, unit, result)
	})
	return path, nil
}

func (f *fakeSystemd) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// managerMethods is the exported org.freedesktop.systemd1.Manager object.
type managerMethods struct{ f *fakeSystemd }

func (m managerMethods) TryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.f.job("TryRestartUnit", unit, mode)
}

func (m managerMethods) ReloadOrTryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.f.job("ReloadOrTryRestartUnit", unit, mode)
}

func (m managerMethods) ReloadUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.f.job("ReloadUnit", unit, mode)
}

// unitProperties is a unit's org.freedesktop.DBus.Properties object.
type unitProperties struct {
	f    *fakeSystemd
	unit string
}

func (p unitProperties) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	u := p.f.units[p.unit]
	switch iface {
	case "org.freedesktop.systemd1.Unit":
		return map[string]dbus.Variant{
			"Id":                   dbus.MakeVariant(p.unit),
			"LoadState":            dbus.MakeVariant(u.load),
			"ActiveState":          dbus.MakeVariant(u.active),
			"SubState":             dbus.MakeVariant(u.sub),
			"ActiveEnterTimestamp": dbus.MakeVariant(u.activeEnter),
		}, nil
	case "org.freedesktop.systemd1.Service":
		return map[string]dbus.Variant{"MainPID": dbus.MakeVariant(u.mainPID)}, nil
	}
	return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{iface})
}

func (p unitProperties) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	all, err := p.GetAll(iface)
	if err != nil {
		return dbus.Variant{}, err
	}
	v, ok := all[name]
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{name})
	}
	return v, nil
}

// testUnits is the fake's world: one unit per job outcome.
func testUnits() map[string]*fakeUnit {
	running := func(result string) *fakeUnit {
		return &fakeUnit{load: "loaded", active: "active", sub: "running", result: result}
	}
	return map[string]*fakeUnit{
		"ok.service":         running("done"),
		"starting.service":   {load: "loaded", active: "activating", sub: "start", result: "done"},
		"stopped.service":    {load: "loaded", active: "inactive", sub: "dead", result: "done"},
		"broken.service":     {load: "loaded", active: "failed", sub: "failed", result: "failed"},
		"slow.service":       {load: "loaded", active: "active", sub: "running", result: "done", delay: time.Hour},
		"timeout.service":    running("timeout"),
		"canceled.service":   running("canceled"),
		"dependency.service": running("dependency"),
		"skipped.service":    running("skipped"),
		"gone.service":       {load: "not-found", active: "inactive", sub: "dead"},
		"web.service": {load: "loaded", active: "active", sub: "running", result: "done",
			activeEnter: 1700000000123456, mainPID: 4242},
	}
}

func connectFake(t *testing.T) (*Manager, *fakeSystemd) {
	t.Helper()
	address := startBus(t)
	f := newFakeSystemd(t, address, testUnits())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := ConnectAddress(ctx, address)
	if err != nil {
		t.Fatalf("ConnectAddress: %v", err)
	}
	t.Cleanup(m.Close)
	return m, f
}

func TestRun(t *testing.T) {
	m, f := connectFake(t)
	tests := []struct {
		unit     string
		mode     Mode
		call     string // the systemd call made, "" for none
		result   string // JobError.Result, "" for success
		state    string // "ActiveState/SubState" in the JobError
		contains string // the error contains it, "" for success
	}{
		{unit: "ok.service", mode: Restart, call: "TryRestartUnit"},
		{unit: "ok.service", mode: ReloadOrRestart, call: "ReloadOrTryRestartUnit"},
		{unit: "ok.service", mode: Reload, call: "ReloadUnit"},
		{unit: "starting.service", mode: Reload, call: "ReloadUnit"},
		{unit: "stopped.service", mode: Reload},
		{unit: "stopped.service", mode: Restart, call: "TryRestartUnit"},
		{unit: "broken.service", mode: Restart, call: "TryRestartUnit", result: "failed", state: "failed/failed",
			contains: `try-restart broken.service: job ended with result "failed" (unit is now failed/failed)`},
		{unit: "timeout.service", mode: ReloadOrRestart, call: "ReloadOrTryRestartUnit", result: "timeout",
			contains: `try-reload-or-restart timeout.service: job ended with result "timeout"`},
		{unit: "canceled.service", mode: Restart, call: "TryRestartUnit", result: "canceled",
			contains: `"canceled"`},
		{unit: "dependency.service", mode: Reload, call: "ReloadUnit", result: "dependency",
			contains: `reload dependency.service: job ended with result "dependency"`},
		{unit: "skipped.service", mode: Restart, call: "TryRestartUnit", result: "skipped",
			contains: `"skipped"`},
		{unit: "gone.service", mode: Restart, call: "TryRestartUnit",
			contains: "try-restart gone.service: Unit gone.service not found."},
		{unit: "gone.service", mode: Reload, contains: "reload gone.service: unit not found"},
		{unit: "ok.service", mode: Mode(0), contains: "unknown mode"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String()+" "+tt.unit, func(t *testing.T) {
			before := len(f.Calls())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := m.Run(ctx, tt.unit, tt.mode)

			var calls []string
			for _, c := range f.Calls()[before:] {
				calls = append(calls, strings.Fields(c)[0])
			}
			switch {
			case tt.call == "" && len(calls) != 0:
				t.Errorf("calls %v, want none", calls)
			case tt.call != "" && (len(calls) != 1 || calls[0] != tt.call):
				t.Errorf("calls %v, want [%s]", calls, tt.call)
			}
			if tt.contains == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got error %v, want one containing %q", err, tt.contains)
			}
			var jerr *JobError
			if got := errors.As(err, &jerr); got != (tt.result != "") {
				t.Fatalf("errors.As(JobError) = %v for %v", got, err)
			}
			if jerr != nil {
				if jerr.Unit != tt.unit || jerr.Mode != tt.mode || jerr.Result != tt.result {
					t.Errorf("JobError %+v", jerr)
				}
				if got := jerr.ActiveState + "/" + jerr.SubState; tt.state != "" && got != tt.state {
					t.Errorf("state %s, want %s", got, tt.state)
				}
			}
		})
	}
	for _, c := range f.Calls() {
		if !strings.HasSuffix(c, " replace") {
			t.Errorf("call %q: want job mode replace", c)
		}
	}
}

func TestRunDeadline(t *testing.T) {
	m, _ := connectFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Run(ctx, "slow.service", Restart)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "try-restart slow.service: wait for job") {
		t.Fatalf("got %v, want a deadline error naming the unit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run returned after %v, long past its deadline", d)
	}
	// The connection still works after an abandoned job.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := m.Run(ctx2, "ok.service", Restart); err != nil {
		t.Errorf("Run after a deadline: %v", err)
	}
}

func TestProperties(t *testing.T) {
	m, _ := connectFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts, err := m.ActiveEnterTimestamp(ctx, "web.service")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMicro(1700000000123456); !ts.Equal(want) {
		t.Errorf("ActiveEnterTimestamp = %v, want %v", ts, want)
	}
	if ts, err := m.ActiveEnterTimestamp(ctx, "stopped.service"); err != nil || !ts.IsZero() {
		t.Errorf("ActiveEnterTimestamp of a never-started unit = %v, %v; want zero", ts, err)
	}
	pid, err := m.MainPID(ctx, "web.service")
	if err != nil || pid != 4242 {
		t.Errorf("MainPID = %d, %v; want 4242", pid, err)
	}
}

// TestConnect checks that Connect uses DBUS_SYSTEM_BUS_ADDRESS, and that the
// context given to Connect does not end the connection.
func TestConnect(t *testing.T) {
	address := startBus(t)
	newFakeSystemd(t, address, testUnits())
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Connect(ctx)
	cancel()
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer m.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := m.Run(ctx2, "ok.service", Restart); err != nil {
		t.Errorf("Run after the connect context ended: %v", err)
	}

	ctx3, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if _, err := ConnectAddress(ctx3, address); err == nil {
		t.Error("ConnectAddress with a cancelled context succeeded")
	}
}

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"restart", Restart, true},
		{"reload", Reload, true},
		{"reload-or-restart", ReloadOrRestart, true},
		{"try-restart", 0, false},
		{"", 0, false},
	} {
		got, err := ParseMode(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseMode(%q) = %v, %v", tt.in, got, err)
		}
	}
}
