package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"

	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/install/installtest"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
)

// daemonProc is a `certbus serve` started by a test.
type daemonProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startDaemon runs certbus serve on the bus and waits until it owns the
// name; it is stopped (SIGTERM, then SIGKILL) by PID when the test ends.
func startDaemon(t *testing.T, busAddr, config string) *daemonProc {
	t.Helper()
	bin := buildBinary(t)
	d := &daemonProc{log: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, "serve", "--bus", busAddr, "--config", config, "--log-level", "debug")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon exited: %v\n%s", err, d.log.String())
		default:
		}
		var has bool
		conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, bus.Name).Store(&has)
		return has
	}, "certbus serve to own "+bus.Name)
	return d
}

func (d *daemonProc) stop(t *testing.T) error {
	if d.cmd.ProcessState != nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("daemon did not stop on SIGTERM within 15s")
		return errors.New("killed")
	}
}

// env is a sandbox: a private system-like bus with the shipped policy, a
// letsencrypt dir, a state dir and a config.
type env struct {
	bus     *testutil.Bus
	dir     string
	le      string
	state   string
	config  string
	dest    string
	reloads string
}

func newEnv(t *testing.T, permissive bool, appsYAML string) *env {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.Need(t, "dbus-daemon", "setpriv", "gdbus")
	e := &env{dir: t.TempDir()}
	e.bus = testutil.StartBus(t, testutil.BusOptions{Policy: filepath.Join(testutil.RepoRoot(t), testutil.ShippedPolicy), Permissive: permissive})
	e.le = filepath.Join(e.dir, "le")
	e.state = filepath.Join(e.dir, "state")
	e.dest = installtest.Dir(t)
	e.reloads = filepath.Join(e.dir, "reloads")
	script := filepath.Join(e.dir, "reload.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$CERTBUS_OPERATION $CERTBUS_DOMAINS\" >> "+e.reloads+"\n"), 0o755)
	os.MkdirAll(e.le, 0o755)
	e.config = filepath.Join(e.dir, "certbus.yaml")
	body := fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps_dir: %s\nreload: {debounce: 200ms, timeout: 10s}\n", e.le, e.state, filepath.Join(e.dir, "apps.d"))
	appsYAML = strings.NewReplacer("$DEST", e.dest, "$RELOAD", script).Replace(appsYAML)
	os.WriteFile(e.config, []byte(body+appsYAML), 0o644)
	return e
}

func (e *env) reloadCount() int {
	b, _ := os.ReadFile(e.reloads)
	return strings.Count(string(b), "\n")
}

func (e *env) client(t *testing.T) *bus.Client {
	c, err := bus.Dial(e.bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const oneApp = `apps:
  - name: web
    type: service
    domains: [a.test, www.a.test]
    copy: {certificate: "$DEST/{domain}/fullchain.pem", private_key: "$DEST/{domain}/privkey.pem"}
    reload: {command: ["$RELOAD"]}
`

// brokenApp is an app whose every reload fails.
const brokenApp = `apps:
  - name: broken
    type: service
    domains: ["*"]
    reload: {command: ["/bin/false"]}
`

// dirState lists every file under dir with its content, to prove that a
// refused event wrote nothing.
func dirState(t *testing.T, dirs ...string) string {
	var b strings.Builder
	for _, dir := range dirs {
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				fmt.Fprintf(&b, "%s %d %x\n", p, len(data), data)
			}
			return nil
		})
	}
	return b.String()
}

func TestDaemonAcceptsInstallsAndReloadsOnce(t *testing.T) {
	e := newEnv(t, false, oneApp)
	startDaemon(t, e.bus.Address, e.config)
	leaf := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, leaf)
	c := e.client(t)
	ctx := context.Background()
	if _, err := c.Notify(ctx, "pre", nil); err != nil {
		t.Fatal(err)
	}
	id, err := c.Notify(ctx, "deploy", hooks.LineageDomains(live, []string{"a.test", "www.a.test"}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait(ctx, id, 5*time.Second)
	if err != nil || len(res) != 1 || res[0].Status != "pending" {
		t.Fatalf("deploy results %+v %v", res, err)
	}
	post, _ := c.Notify(ctx, "post", nil)
	res, err = c.Wait(ctx, post, 10*time.Second)
	if err != nil || len(res) != 1 || res[0].Status != "ok" {
		t.Fatalf("post results %+v %v", res, err)
	}
	if n := e.reloadCount(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
	for _, d := range []string{"a.test", "www.a.test"} {
		got, _ := os.ReadFile(filepath.Join(e.dest, d, "fullchain.pem"))
		if !bytes.Equal(got, leaf.FullchainPEM()) {
			t.Errorf("%s: fullchain not installed", d)
		}
	}
	if _, err := c.Wait(ctx, "no-such-event", 1000); err == nil || !strings.Contains(err.Error(), "unknown event") {
		t.Errorf("unknown event: %v", err)
	}
	// The journal was written before Notify returned.
	j, _ := os.ReadFile(filepath.Join(e.state, "journal.jsonl"))
	if !strings.Contains(string(j), id) {
		t.Errorf("journal lacks %s", id)
	}
	// Introspection shows the contract.
	out, err := exec.Command("gdbus", "introspect", "--address", e.bus.Address, "--dest", bus.Name, "--object-path", string(bus.Path)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Notify(in  s operation,") || !strings.Contains(string(out), "CertificateEvent(s event_id") {
		t.Errorf("introspect: %v\n%s", err, out)
	}
}

func TestDaemonRefusesBadInputAndWritesNothing(t *testing.T) {
	e := newEnv(t, false, oneApp)
	startDaemon(t, e.bus.Address, e.config)
	good := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, good)
	otherLive := testcerts.MustLineage(t, e.le, "b.test", 1, testcerts.MustIssue(t, []string{"b.test"}, testcerts.Options{}))
	expired := testcerts.MustLineage(t, e.le, "old.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "cert.pem"), good.CertPEM, 0o644)
	os.Symlink(filepath.Join(outside, "cert.pem"), filepath.Join(e.le, "escape.pem"))
	os.WriteFile(filepath.Join(e.le, "junk.pem"), []byte("junk"), 0o644)
	c := e.client(t)
	cert, key := filepath.Join(live, "cert.pem"), filepath.Join(live, "privkey.pem")
	pair := func(c, k string) map[string]string { return map[string]string{"certificate": c, "private_key": k} }
	time.Sleep(100 * time.Millisecond)
	before := dirState(t, e.dest, e.state)
	for _, tc := range []struct {
		name, op string
		doms     map[string]map[string]string
		want     string
	}{
		{"outside", "deploy", map[string]map[string]string{"a.test": pair(filepath.Join(outside, "cert.pem"), key)}, "outside the allowed"},
		{"symlink escaping", "deploy", map[string]map[string]string{"a.test": pair(filepath.Join(e.le, "escape.pem"), key)}, "outside the allowed"},
		{"relative", "deploy", map[string]map[string]string{"a.test": pair("live/a.test/cert.pem", key)}, "not absolute"},
		{"key mismatch", "deploy", map[string]map[string]string{"a.test": pair(cert, filepath.Join(otherLive, "privkey.pem"))}, "does not match"},
		{"not covered", "deploy", map[string]map[string]string{"c.test": pair(cert, key)}, "not covered"},
		{"invalid name", "deploy", map[string]map[string]string{"a..test": pair(cert, key)}, "label"},
		{"expired", "deploy", hooks.LineageDomains(expired, []string{"a.test"}), "expired"},
		{"not a certificate", "deploy", map[string]map[string]string{"a.test": pair(filepath.Join(e.le, "junk.pem"), key)}, "not a PEM certificate"},
		{"unknown info key", "deploy", map[string]map[string]string{"a.test": {"certificate": cert, "private_key": key, "pem": cert}}, "unknown info key"},
		{"missing key", "deploy", map[string]map[string]string{"a.test": {"certificate": cert}}, "missing private_key"},
		{"empty deploy", "deploy", nil, "without domains"},
		{"unknown operation", "renew", nil, "unknown operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Notify(context.Background(), tc.op, tc.doms)
			var rej *bus.RejectedError
			if !errors.As(err, &rej) || rej.Name != bus.ErrInvalidArgument {
				t.Fatalf("err = %v, want %s", err, bus.ErrInvalidArgument)
			}
			if !strings.Contains(rej.Message, tc.want) {
				t.Errorf("message %q does not say %q", rej.Message, tc.want)
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // past the debounce: nothing may run
	if after := dirState(t, e.dest, e.state); after != before {
		t.Errorf("a refused event changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if e.reloadCount() != 0 {
		t.Error("a refused event caused a reload")
	}
	// The daemon is still alive and well.
	if _, err := c.Notify(context.Background(), "pre", nil); err != nil {
		t.Fatalf("daemon after bad input: %v", err)
	}
}

// notifyAs calls Notify as another user with gdbus.
func notifyAs(t *testing.T, addr string, uid, gid int, groups []int) (string, error) {
	cmd := testutil.AsUser(uid, gid, groups, "gdbus", "call", "--address", addr, "--dest", bus.Name,
		"--object-path", string(bus.Path), "--method", bus.Interface+".Notify", "pre", "{}")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCallerChecks(t *testing.T) {
	t.Run("policy denies nobody", func(t *testing.T) {
		e := newEnv(t, false, "apps: []\n")
		startDaemon(t, e.bus.Address, e.config)
		out, err := notifyAs(t, e.bus.Address, testutil.Nobody, testutil.Nobody, nil)
		if err == nil || !strings.Contains(out, "AccessDenied") || !strings.Contains(out, "Rejected send message") {
			t.Fatalf("nobody through the shipped policy: %v\n%s", err, out)
		}
	})
	t.Run("daemon denies nobody on a permissive bus", func(t *testing.T) {
		e := newEnv(t, true, "apps: []\n")
		startDaemon(t, e.bus.Address, e.config)
		out, err := notifyAs(t, e.bus.Address, testutil.Nobody, testutil.Nobody, nil)
		if err == nil || !strings.Contains(out, "AccessDenied") || !strings.Contains(out, "not allowed to call certbus") {
			t.Fatalf("nobody on a permissive bus: %v\n%s", err, out)
		}
	})
	t.Run("group certbus may call", func(t *testing.T) {
		gid := testutil.EnsureGroup(t, "certbus")
		e := newEnv(t, false, "apps: []\n")
		startDaemon(t, e.bus.Address, e.config)
		out, err := notifyAs(t, e.bus.Address, testutil.Nobody, testutil.Nobody, []int{gid})
		if err != nil {
			t.Fatalf("member of certbus refused: %v\n%s", err, out)
		}
	})
	t.Run("allowed_users", func(t *testing.T) {
		e := newEnv(t, true, "allowed_groups: []\nallowed_users: [nobody]\napps: []\n")
		startDaemon(t, e.bus.Address, e.config)
		if out, err := notifyAs(t, e.bus.Address, testutil.Nobody, testutil.Nobody, nil); err != nil {
			t.Fatalf("allowed user refused: %v\n%s", err, out)
		}
	})
}

// A second daemon stops before it takes anything: with the same state_dir
// at the journal's lock (before it touches the journal), with its own
// state_dir at the bus name (it never queues for it).
func TestSecondDaemonRefusesToQueue(t *testing.T) {
	e := newEnv(t, false, "apps: []\n")
	startDaemon(t, e.bus.Address, e.config)
	journalPath := filepath.Join(e.state, "journal.jsonl")
	before, _ := os.ReadFile(journalPath)
	other := filepath.Join(t.TempDir(), "certbus.yaml")
	body, _ := os.ReadFile(e.config)
	if err := os.WriteFile(other, []byte(strings.Replace(string(body), "state_dir: "+e.state, "state_dir: "+filepath.Join(filepath.Dir(other), "state"), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The other state dir holds what a crash leaves: an entry, then the
	// padding of an open journal. A serve that fails still closes it.
	otherJournal := filepath.Join(filepath.Dir(other), "state", "journal.jsonl")
	if err := os.MkdirAll(filepath.Dir(otherJournal), 0o700); err != nil {
		t.Fatal(err)
	}
	entry := `{"id":"e1","operation":"pre","time":"2026-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(otherJournal, []byte(entry+strings.Repeat(" ", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	for config, want := range map[string]string{e.config: "is in use by another process", other: "not the primary owner"} {
		out, err := exec.Command(buildBinary(t), "serve", "--bus", e.bus.Address, "--config", config).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), want) {
			t.Errorf("second serve with %s: %v, want an error saying %q\n%s", config, err, want, out)
		}
	}
	if after, _ := os.ReadFile(journalPath); !bytes.Equal(before, after) {
		t.Error("the second daemon changed the first one's journal")
	}
	if got, _ := os.ReadFile(otherJournal); string(got) != entry {
		t.Errorf("the failed serve left its journal at %d bytes, want the entry alone (%d bytes, no padding)", len(got), len(entry))
	}
}

func TestHookSpoolsWhileDaemonDownAndReplays(t *testing.T) {
	e := newEnv(t, false, oneApp)
	leaf := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, leaf)
	hook := func(kind string) (string, int) {
		return hookRun(t, e, []string{kind}, deployEnv(live, "a.test")...)
	}
	for _, k := range []string{"pre", "deploy", "post"} {
		out, code := hook(k)
		if code != 0 || !strings.Contains(out, "spooled to") {
			t.Fatalf("hook %s with no daemon: exit %d\n%s", k, code, out)
		}
	}
	spooled, _ := hooks.ReadSpool(e.state)
	if len(spooled) != 3 {
		t.Fatalf("%d spooled events, want 3", len(spooled))
	}
	startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the replayed run's reload")
	got, _ := os.ReadFile(filepath.Join(e.dest, "a.test", "privkey.pem"))
	if !bytes.Equal(got, leaf.KeyPEM) {
		t.Error("replayed deploy did not install the key")
	}
	if left, _ := hooks.ReadSpool(e.state); len(left) != 0 {
		t.Errorf("%d spool files left after replay", len(left))
	}
	time.Sleep(400 * time.Millisecond)
	if n := e.reloadCount(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}

// A daemon that hangs (SIGSTOP here; or one activated slower than the
// bus's timeout) does not lose the event: the hook spools it at its
// deadline, and `--spool` (certbus-hook's hand-over after its own
// deadline) spools without trying again. The daemon replays both later.
func TestHookSpoolsWhenTheDaemonHangs(t *testing.T) {
	e := newEnv(t, false, oneApp)
	d := startDaemon(t, e.bus.Address, e.config)
	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			d.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	out, code := hookRun(t, e, []string{"--timeout", "1s", "pre"})
	if code != 0 || !strings.Contains(out, "no answer before the deadline") || !strings.Contains(out, "spooled to") {
		t.Errorf("pre to a hung daemon: exit %d, want 0, spooled at the deadline\n%s", code, out)
	}
	start := time.Now()
	out, code = hookRun(t, e, []string{"--spool", "post"})
	if code != 0 || !strings.Contains(out, "spooled to") || time.Since(start) > 5*time.Second {
		t.Errorf("post --spool: exit %d after %v, want 0 at once, spooled\n%s", code, time.Since(start), out)
	}
	if spooled, _ := hooks.ReadSpool(e.state); len(spooled) != 2 {
		t.Errorf("%d spooled events, want 2", len(spooled))
	}
	d.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
}

// Events spooled while the daemon runs (a hook that timed out on it, or
// found no daemon just before it started) are replayed without a restart:
// every minute, or at once on SIGHUP.
func TestSpoolReplayedWhileRunning(t *testing.T) {
	e := newEnv(t, false, oneApp)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	d := startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "first-start catch-up")
	for _, k := range []string{"pre", "deploy", "post"} {
		if out, code := hookRun(t, e, []string{"--spool", k}, deployEnv(live, "a.test")...); code != 0 || !strings.Contains(out, "spooled to") {
			t.Fatalf("hook --spool %s: exit %d\n%s", k, code, out)
		}
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		left, _ := hooks.ReadSpool(e.state)
		return len(left) == 0
	}, "the spool replayed after SIGHUP")
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 2 }, "the replayed run's one reload")
}

func TestHookWaitExitCodes(t *testing.T) {
	e := newEnv(t, false, brokenApp)
	startDaemon(t, e.bus.Address, e.config)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	run := func(args []string, extra ...string) (string, int) {
		return e.run(t, buildBinary(t), args, extra...)
	}
	run([]string{"hook", "pre"})
	if out, code := run([]string{"hook", "deploy"}, "RENEWED_LINEAGE="+live, "RENEWED_DOMAINS=a.test"); code != 0 {
		t.Fatalf("deploy: %d %s", code, out)
	}
	out, code := run([]string{"hook", "post", "--wait", "--timeout", "30s"})
	if code != 4 || !strings.Contains(out, "broken") {
		t.Errorf("post --wait with a failing app: exit %d, want 4 naming the app\n%s", code, out)
	}
	out, code = run([]string{"hook", "deploy"}, "RENEWED_LINEAGE="+e.le+"/live/nope", "RENEWED_DOMAINS=a.test")
	if code != 3 || !strings.Contains(out, "refused") {
		t.Errorf("bad deploy: exit %d, want 3\n%s", code, out)
	}
}

// The reply to Notify does not wait for the CertificateEvent signal (it is
// emitted after, off the caller's path), but the signals still come in the
// order the events were accepted, each once, including the last one when
// the daemon stops right after it (that Stop waits for the queue is pinned
// by bus's TestAcceptReturnsBeforeAnnounceAndStopDrains).
func TestCertificateEventsInOrderAndDrainedAtStop(t *testing.T) {
	e := newEnv(t, false, oneApp)
	d := startDaemon(t, e.bus.Address, e.config)
	leaf := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, leaf)
	watch, err := dbus.Connect(e.bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := watch.AddMatchSignal(dbus.WithMatchInterface(bus.Interface), dbus.WithMatchMember("CertificateEvent")); err != nil {
		t.Fatal(err)
	}
	all := make(chan *dbus.Signal, 64)
	watch.Signal(all)
	// Only CertificateEvent: the bus itself may signal this connection
	// (NameAcquired).
	signals := make(chan *dbus.Signal, 64)
	go func() {
		for s := range all {
			if s.Name == bus.Interface+".CertificateEvent" {
				signals <- s
			}
		}
	}()
	c := e.client(t)
	ctx := context.Background()
	var want []string
	for range 5 {
		for _, op := range []string{"pre", "deploy", "post"} {
			var doms map[string]map[string]string
			if op == "deploy" {
				doms = hooks.LineageDomains(live, []string{"a.test"})
			}
			id, err := c.Notify(ctx, op, doms)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, op+" "+id)
		}
	}
	// Stop right after the last reply: its signal must still go out.
	if err := d.stop(t); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case s := <-signals:
			if len(s.Body) != 3 {
				t.Fatalf("CertificateEvent with %d values", len(s.Body))
			}
			got = append(got, fmt.Sprint(s.Body[1], " ", s.Body[0]))
		case <-timeout:
			t.Fatalf("%d of %d CertificateEvent signals; got %q", len(got), len(want), got)
		}
	}
	select {
	case s := <-signals:
		t.Errorf("one CertificateEvent more than events accepted: %v", s.Body[:2])
	case <-time.After(200 * time.Millisecond):
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("signals, in order received:\n%s\nwant, in order accepted:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(d.log.String(), "event accepted"); n != len(want) {
		t.Errorf("%d 'event accepted' log lines, want %d", n, len(want))
	}
}

// The applied state is read beside the config at start; a corrupt one
// still stops the daemon before it takes the name, saying what to do.
func TestCorruptAppliedStateStopsStart(t *testing.T) {
	e := newEnv(t, false, oneApp)
	os.MkdirAll(e.state, 0o700)
	if err := os.WriteFile(filepath.Join(e.state, "applied.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildBinary(t), "serve", "--bus", e.bus.Address, "--config", e.config)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "is corrupt") || !strings.Contains(string(out), "move it aside") {
		t.Fatalf("serve with a corrupt applied state: %v\n%s", err, out)
	}
	if owner, _ := exec.Command("gdbus", "call", "--address", e.bus.Address, "--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus",
		"--method", "org.freedesktop.DBus.NameHasOwner", bus.Name).Output(); !strings.Contains(string(owner), "false") {
		t.Errorf("the name is owned after a failed start: %s", owner)
	}
}

// A SIGHUP that comes while the daemon is still starting (before Run has
// its runner and server) waits for Run, which reloads on its own goroutine
// once started; several waiting are one.
func TestSighupWhileStartingIsKept(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certbus.yaml")
	body := fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps: []\n", filepath.Join(dir, "le"), filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(daemonOptions{ConfigPath: cfg, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	d.RequestReload()
	d.RequestReload()
	if n := len(d.reloads); n != 1 {
		t.Errorf("%d reloads waiting after two early SIGHUPs, want 1", n)
	}
}
