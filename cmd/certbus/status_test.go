package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	_ "github.com/certbus/certbus/apps/signal" // a PID file's daemon, until apps/all links it
	"github.com/certbus/certbus/internal/applied"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
)

// statusEnv is a config with its directories, for status runs that need no
// daemon.
type statusEnv struct {
	dir, le, state, dest, config string
}

func newStatusEnv(t *testing.T, appsYAML string) *statusEnv {
	t.Helper()
	e := &statusEnv{dir: t.TempDir()}
	e.le, e.state, e.dest = filepath.Join(e.dir, "le"), filepath.Join(e.dir, "state"), filepath.Join(e.dir, "dest")
	for _, d := range []string{e.le, e.state, e.dest} {
		os.MkdirAll(d, 0o755)
	}
	e.config = filepath.Join(e.dir, "certbus.yaml")
	body := fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps_dir: %s\n", e.le, e.state, filepath.Join(e.dir, "apps.d"))
	os.WriteFile(e.config, []byte(body+strings.ReplaceAll(appsYAML, "$DIR", e.dir)), 0o644)
	return e
}

// status runs `certbus status` in this process (so that the signal app
// type is linked in) and returns stdout, stderr and the exit code.
func status(t *testing.T, config string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"status", "--config", config}, args...), nil, &out, &errb)
	return out.String(), errb.String(), code
}

func statusJSON(t *testing.T, config string, args ...string) (*statusReport, int) {
	t.Helper()
	out, errs, code := status(t, config, append(args, "--json")...)
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s\n%s", err, out, errs)
	}
	return &rep, code
}

func (r *statusReport) row(t *testing.T, app, domain string) statusRow {
	t.Helper()
	for _, row := range r.Rows {
		if row.App == app && row.Domain == domain {
			return row
		}
	}
	t.Fatalf("no row for %s %s in %+v", app, domain, r.Rows)
	return statusRow{}
}

// startProcess starts a long sleep standing for a daemon, writes its PID
// file, and kills it (by PID) when the test ends.
func startProcess(t *testing.T, pidFile string) int {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	return cmd.Process.Pid
}

// tlsServer serves leaf on a loopback port, as a daemon holding that
// certificate would, until the test ends.
func tlsServer(t *testing.T, l *testcerts.Leaf) string {
	t.Helper()
	pair, err := tls.X509KeyPair(l.FullchainPEM(), l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestStatusDaemonStates produces each daemon state for real: processes
// started before and after the certificate was written (found through
// their PID files and /proc start times), a reload recorded by certbus, a
// dead PID, and a probe that settles a stale verdict.
func TestStatusDaemonStates(t *testing.T) {
	e := newStatusEnv(t, `apps:
  - {name: old, type: signal, domains: [a.test], options: {pid_file: $DIR/old.pid}}
  - {name: new, type: signal, domains: [a.test], options: {pid_file: $DIR/new.pid}}
  - {name: reloaded, type: signal, domains: [a.test], options: {pid_file: $DIR/reloaded.pid}}
  - {name: stopped, type: signal, domains: [a.test], options: {pid_file: $DIR/stopped.pid}}
  - {name: bycommand, type: service, domains: [a.test], reload: {command: [/bin/true]}}
  - {name: probed, type: signal, domains: [a.test], options: {pid_file: $DIR/old.pid}, verify: {address: "$TLS"}}
`)
	startProcess(t, filepath.Join(e.dir, "old.pid"))
	startProcess(t, filepath.Join(e.dir, "reloaded.pid"))
	os.WriteFile(filepath.Join(e.dir, "stopped.pid"), []byte("999999999\n"), 0o644)
	time.Sleep(200 * time.Millisecond)
	l := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 1, l)
	time.Sleep(200 * time.Millisecond)
	startProcess(t, filepath.Join(e.dir, "new.pid"))
	// What the daemon records once it reloaded an app onto a certificate.
	st, err := applied.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	st.Set("reloaded", "a.test", applied.Record{Fingerprint: l.Fingerprint, NotAfter: l.Cert.NotAfter, Time: time.Now()})

	rep, code := statusJSON(t, e.config)
	for app, want := range map[string]string{"old": daemonStale, "new": daemonFresh, "reloaded": daemonReloaded, "stopped": daemonStopped, "bycommand": daemonNA} {
		row := rep.row(t, app, "a.test")
		if row.Daemon != want {
			t.Errorf("%s: daemon %q (%s), want %q", app, row.Daemon, row.DaemonDetail, want)
		}
		if row.Copy != copyNA {
			t.Errorf("%s: copy %q, want n/a (the app reads the lineage)", app, row.Copy)
		}
	}
	if old := rep.row(t, "old", "a.test"); !old.DaemonStarted.Before(old.Written) || !strings.Contains(old.DaemonDetail, "before the certificate was written") {
		t.Errorf("stale row: started %s, written %s: %s", old.DaemonStarted, old.Written, old.DaemonDetail)
	}
	if code != 1 || rep.OK || rep.Problems != 2 {
		t.Errorf("exit %d, ok %v, %d problems: want 1, false, 2 (the stale daemons)", code, rep.OK, rep.Problems)
	}
	// A daemon that started before the certificate but serves it (it was
	// reloaded by hand, say): the probe settles it.
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.Replace(b, []byte("$TLS"), []byte(tlsServer(t, l)), 1), 0o644)
	rep, _ = statusJSON(t, e.config, "--probe")
	if r := rep.row(t, "probed", "a.test"); r.Daemon != daemonServing || r.Probe != probeMatch || len(r.Problems) != 0 {
		t.Errorf("probed: daemon %q probe %q problems %v, want serving, match, none", r.Daemon, r.Probe, r.Problems)
	}
	if r := rep.row(t, "old", "a.test"); r.Daemon != daemonStale || r.Probe != probeNA {
		t.Errorf("old with --probe and no verify endpoint: daemon %q probe %q, want stale, n/a", r.Daemon, r.Probe)
	}
	out, errs, _ := status(t, e.config)
	if !strings.Contains(out, "old: stale") && !strings.Contains(out, "old a.test: stale: pid file") {
		t.Errorf("human output lacks the stale row's explanation:\n%s", out)
	}
	if !strings.Contains(errs, "2 problem(s): old a.test stale, probed a.test stale") || !strings.Contains(errs, "certbus status --fix") {
		t.Errorf("exit message:\n%s", errs)
	}
}

// TestStatusCopyExpiryAndProbe: an outdated copy, a missing copy, an
// up-to-date one, a certificate expiring in 10 days, and with --probe a
// server still holding the old certificate next to one serving the new.
func TestStatusCopyExpiryAndProbe(t *testing.T) {
	e := newStatusEnv(t, `apps:
  - name: web
    type: service
    domains: [a.test, b.test]
    copy: {certificate: "$DIR/dest/{domain}/fullchain.pem", private_key: "$DIR/dest/{domain}/privkey.pem"}
    verify: {address: "$OLDTLS"}
  - name: fresh
    type: service
    domains: [a.test]
    verify: {address: "$NEWTLS"}
  - name: soon
    type: service
    domains: [soon.test]
`)
	old := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	cur := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 1, old)
	testcerts.MustLineage(t, e.le, "a.test", 2, cur)
	testcerts.MustLineage(t, e.le, "b.test", 1, testcerts.MustIssue(t, []string{"b.test"}, testcerts.Options{}))
	soon := testcerts.MustIssue(t, []string{"soon.test"}, testcerts.Options{NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	testcerts.MustLineage(t, e.le, "soon.test", 1, soon)
	// web's copy of a.test is the old certificate (a renewal it missed);
	// b.test was never installed.
	os.MkdirAll(filepath.Join(e.dest, "a.test"), 0o755)
	os.WriteFile(filepath.Join(e.dest, "a.test", "fullchain.pem"), old.FullchainPEM(), 0o644)
	os.WriteFile(filepath.Join(e.dest, "a.test", "privkey.pem"), old.KeyPEM, 0o600)
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.NewReplacer("$OLDTLS", tlsServer(t, old), "$NEWTLS", tlsServer(t, cur)).Replace(string(b))), 0o644)

	rep, code := statusJSON(t, e.config, "--probe")
	if code != 1 || rep.OK {
		t.Fatalf("exit %d ok %v, want 1 false", code, rep.OK)
	}
	if r := rep.row(t, "web", "a.test"); r.Copy != copyOutdated || r.Fingerprint != cur.Fingerprint || !strings.Contains(r.CopyDetail, "expires") {
		t.Errorf("web a.test: copy %q (%s), want outdated-copy against %s", r.Copy, r.CopyDetail, cur.Fingerprint)
	}
	if r := rep.row(t, "web", "a.test"); r.Probe != probeMismatch || r.Served != old.Fingerprint {
		t.Errorf("web a.test: probe %q served %s, want mismatch serving the old %s", r.Probe, r.Served, old.Fingerprint)
	}
	if r := rep.row(t, "web", "b.test"); r.Copy != copyMissing {
		t.Errorf("web b.test: copy %q, want missing", r.Copy)
	}
	if r := rep.row(t, "fresh", "a.test"); r.Copy != copyNA || r.Probe != probeMatch || len(r.Problems) != 0 {
		t.Errorf("fresh a.test: copy %q probe %q problems %v, want n/a, match, none", r.Copy, r.Probe, r.Problems)
	}
	if r := rep.row(t, "soon", "soon.test"); len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "expires in 9 day") && !strings.Contains(r.Problems[0], "expires in 10 day") {
		t.Errorf("soon.test: problems %v, want expiry in 10 days", r.Problems)
	}
	// Installing the current certificate makes the copy up to date.
	os.WriteFile(filepath.Join(e.dest, "a.test", "fullchain.pem"), cur.FullchainPEM(), 0o644)
	rep, _ = statusJSON(t, e.config)
	if r := rep.row(t, "web", "a.test"); r.Copy != copyOutdated || !strings.Contains(r.CopyDetail, "does not match") {
		t.Errorf("new certificate with the old key: copy %q (%s), want outdated-copy (mismatched pair)", r.Copy, r.CopyDetail)
	}
	os.WriteFile(filepath.Join(e.dest, "a.test", "privkey.pem"), cur.KeyPEM, 0o600)
	rep, _ = statusJSON(t, e.config)
	if r := rep.row(t, "web", "a.test"); r.Copy != copyUpToDate {
		t.Errorf("copy %q (%s), want up-to-date", r.Copy, r.CopyDetail)
	}
	// A longer warning window, and the expiring row is the only problem
	// left once b.test is installed.
	os.MkdirAll(filepath.Join(e.dest, "b.test"), 0o755)
	bl, _ := os.ReadFile(filepath.Join(e.le, "live", "b.test", "fullchain.pem"))
	bk, _ := os.ReadFile(filepath.Join(e.le, "live", "b.test", "privkey.pem"))
	os.WriteFile(filepath.Join(e.dest, "b.test", "fullchain.pem"), bl, 0o644)
	os.WriteFile(filepath.Join(e.dest, "b.test", "privkey.pem"), bk, 0o600)
	if _, _, code := status(t, e.config, "--days", "5"); code != 0 {
		t.Errorf("--days 5: exit %d, want 0", code)
	}
	if _, errs, code := status(t, e.config); code != 1 || !strings.Contains(errs, "soon soon.test expiring") {
		t.Errorf("exit %d, want 1 naming soon.test:\n%s", code, errs)
	}
}

// TestStatusColoursOnlyOnATerminal runs status with its output on a
// pseudo-terminal, then on a pipe.
func TestStatusColoursOnlyOnATerminal(t *testing.T) {
	e := newStatusEnv(t, "apps:\n  - {name: web, type: service, domains: [a.test]}\n")
	testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	ptmx, pts := openPTY(t)
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	var errb bytes.Buffer
	done := make(chan []byte)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		done <- b.Bytes()
	}()
	if code := run([]string{"status", "--config", e.config}, nil, pts, &errb); code != 0 {
		t.Fatalf("status on a terminal: exit %d\n%s", code, errb.String())
	}
	pts.Close()
	if got := <-done; !bytes.Contains(got, []byte(green)) {
		t.Errorf("no colour on a terminal:\n%q", got)
	}
	out, _, _ := status(t, e.config)
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes on a pipe:\n%q", out)
	}
	if !strings.Contains(out, "web  a.test") || !strings.Contains(out, "n/a") {
		t.Errorf("table:\n%s", out)
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testutil.Missing(t, "no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// TestStatusFixRedeploysAnOutdatedCopy: the daemon installs a lineage at
// start; certbot then renews it with no hook reaching certbus (a hook
// removed by hand, say), so the app's copy is outdated and status exits 1;
// `status --fix` has the daemon deploy it again with one reload, and status
// is clean. Also: an app whose copy is missing is fixed in the same run.
func TestStatusFixRedeploysAnOutdatedCopy(t *testing.T) {
	e := newEnv(t, false, oneApp+`  - name: other
    type: service
    domains: [b.test]
    copy: {certificate: "$DEST/other/{domain}.pem", private_key: "$DEST/other/{domain}.key"}
`)
	testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	d := startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the catch-up install at start")
	rep, code := statusJSON(t, e.config)
	if r := rep.row(t, "web", "a.test"); code != 0 || r.Copy != copyUpToDate {
		t.Fatalf("after catch-up: exit %d, copy %q (%s)", code, r.Copy, r.CopyDetail)
	}
	renewed := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 2, renewed)
	testcerts.MustLineage(t, e.le, "b.test", 1, testcerts.MustIssue(t, []string{"b.test"}, testcerts.Options{}))
	rep, code = statusJSON(t, e.config)
	if code != 1 || rep.row(t, "web", "a.test").Copy != copyOutdated || rep.row(t, "other", "b.test").Copy != copyMissing {
		t.Fatalf("after a renewal certbus missed: exit %d, rows %+v", code, rep.Rows)
	}
	out, errs, code := status(t, e.config, "--bus", e.bus.Address, "--fix")
	if code != 0 {
		t.Fatalf("status --fix: exit %d\n%s\n%s\ndaemon:\n%s", code, out, errs, d.log.String())
	}
	if !strings.Contains(out, "FIX") || !strings.Contains(out, "web: ok: reloaded") || !strings.Contains(out, ": b.test (") {
		t.Errorf("status --fix does not show the redeploys and their results:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dest, "other", "b.test.pem")); err != nil {
		t.Errorf("--fix did not install the missing copy: %v", err)
	}
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads of web, want 2 (catch-up, then one for the fix)", n)
	}
	got, _ := os.ReadFile(filepath.Join(e.dest, "a.test", "fullchain.pem"))
	if !bytes.Equal(got, renewed.FullchainPEM()) {
		t.Error("--fix did not install the renewed certificate")
	}
	if _, _, code := status(t, e.config); code != 0 {
		t.Errorf("status after --fix: exit %d, want 0", code)
	}
	// Nothing left to fix: nothing is sent.
	if out, _, code := status(t, e.config, "--bus", e.bus.Address, "--fix"); code != 0 || !strings.Contains(out, "nothing to fix") {
		t.Errorf("second --fix: exit %d\n%s", code, out)
	}
	time.Sleep(400 * time.Millisecond)
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads after a --fix with nothing to fix, want still 2", n)
	}
}

// TestStatusFixWithoutDaemon: --fix with no daemon to ask fails, saying so.
func TestStatusFixWithoutDaemon(t *testing.T) {
	e := newStatusEnv(t, `apps:
  - {name: web, type: service, domains: [a.test], copy: {certificate: "$DIR/dest/{domain}.pem", private_key: "$DIR/dest/{domain}.key"}}
`)
	testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	_, errs, code := status(t, e.config, "--bus", "unix:path="+filepath.Join(e.dir, "no-bus"), "--fix")
	if code != 1 || !strings.Contains(errs, "--fix:") || !strings.Contains(errs, "certbus.service") {
		t.Errorf("exit %d, want 1 with a hint:\n%s", code, errs)
	}
}

// fakeSystemd serves, on a private bus, the few calls of systemd's D-Bus
// API that the daemon's unit reloads and status use: the jobs
// ReloadOrTryRestartUnit (a reload: the unit's ActiveEnterTimestamp stays)
// and TryRestartUnit (a restart: it moves), each answered with a job path
// and a JobRemoved signal, and the unit properties ActiveEnterTimestamp and
// MainPID. It is a fake because systemd cannot run here (it must be PID 1
// or a user instance of a booted system); the system test boots a real one.
type fakeSystemd struct {
	conn *dbus.Conn

	mu          sync.Mutex
	activeEnter time.Time
	mainPID     uint32
	calls       []string
	jobs        uint32
}

const fakeUnit = "web.service"

func startFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeSystemd{conn: conn, activeEnter: time.Now(), mainPID: 4242}
	if err := conn.Export(f, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Export(fakeProps{f}, dbus.ObjectPath("/org/freedesktop/systemd1/unit/"+sddbus.PathBusEscape(fakeUnit)), "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v %v", r, err)
	}
	// Both the daemon started by the test and status in this process reach
	// "systemd" through the system bus address.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", b.Address)
	return f
}

func (f *fakeSystemd) job(method, unit string, restart bool) (dbus.ObjectPath, *dbus.Error) {
	if unit != fakeUnit {
		return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + unit + " not found."})
	}
	f.mu.Lock()
	f.jobs++
	id := f.jobs
	f.calls = append(f.calls, method)
	if restart {
		f.activeEnter = time.Now()
	}
	f.mu.Unlock()
	p := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	go func() {
		time.Sleep(10 * time.Millisecond)
		f.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, p, unit, "done")
	}()
	return p, nil
}

func (f *fakeSystemd) ReloadOrTryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return f.job("ReloadOrTryRestartUnit", unit, false)
}

func (f *fakeSystemd) TryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return f.job("TryRestartUnit", unit, true)
}

func (f *fakeSystemd) set(enter time.Time, pid uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.activeEnter, f.mainPID = enter, pid
}

func (f *fakeSystemd) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type fakeProps struct{ f *fakeSystemd }

func (p fakeProps) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	switch iface + "." + prop {
	case "org.freedesktop.systemd1.Unit.ActiveEnterTimestamp":
		return dbus.MakeVariant(uint64(p.f.activeEnter.UnixMicro())), nil
	case "org.freedesktop.systemd1.Service.MainPID":
		return dbus.MakeVariant(p.f.mainPID), nil
	}
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{iface + "." + prop})
}

// TestStatusStaleUnitAndFix follows a unit-reloaded app that reads the
// lineage directly through its states, with the real daemon reloading it:
// stale before certbus ever ran, reloaded once catch-up has reloaded it (a
// reload does not move ActiveEnterTimestamp: only certbus's record tells),
// stale again after a renewal certbus never heard of, reloaded after
// --fix, fresh after a restart by hand, stopped with no main process.
func TestStatusStaleUnitAndFix(t *testing.T) {
	e := newEnv(t, false, `apps:
  - name: web
    type: service
    domains: [a.test]
    reload: {units: [web.service], mode: reload-or-restart}
`)
	sd := startFakeSystemd(t)
	time.Sleep(100 * time.Millisecond)
	testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	daemonIs := func(want string, code int) {
		t.Helper()
		rep, got := statusJSON(t, e.config)
		r := rep.row(t, "web", "a.test")
		if r.Daemon != want || got != code || r.DaemonName != fakeUnit {
			t.Fatalf("daemon %q (%s: %s), exit %d: want %q, exit %d", r.Daemon, r.DaemonName, r.DaemonDetail, got, want, code)
		}
	}
	daemonIs(daemonStale, 1)

	startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(sd.callList()) == 1 }, "the catch-up reload of web.service")
	testutil.WaitFor(t, 5*time.Second, func() bool { rep, _ := statusJSON(t, e.config); return rep.OK }, "the applied record")
	daemonIs(daemonReloaded, 0)

	testcerts.MustLineage(t, e.le, "a.test", 2, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	daemonIs(daemonStale, 1)
	out, errs, code := status(t, e.config, "--bus", e.bus.Address, "--fix")
	if code != 0 || !strings.Contains(out, "web: ok: reloaded (systemd reload-or-restart web.service)") {
		t.Fatalf("status --fix: exit %d\n%s\n%s", code, out, errs)
	}
	if calls := sd.callList(); len(calls) != 2 || calls[1] != "ReloadOrTryRestartUnit" {
		t.Errorf("systemd calls %v, want two ReloadOrTryRestartUnit", calls)
	}
	daemonIs(daemonReloaded, 0)

	sd.set(time.Now(), 4343)
	daemonIs(daemonFresh, 0)
	sd.set(time.Now().Add(-time.Hour), 0)
	daemonIs(daemonStopped, 0)
}

// status reads the journal while the daemon has it open (padded, being
// written) and changes nothing: the file is byte for byte the same, and
// the daemon's next entry is readable.
func TestStatusLeavesTheDaemonsJournalAlone(t *testing.T) {
	e := newStatusEnv(t, "")
	j, err := journal.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(journal.Entry{ID: "e1", Operation: "pre", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.state, "journal.jsonl")
	before, _ := os.ReadFile(path)
	rep, _ := statusJSON(t, e.config)
	if len(rep.Events) != 1 || rep.Events[0].ID != "e1" {
		t.Errorf("status events = %+v, want e1", rep.Events)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("status changed the journal: %d bytes before, %d after", len(before), len(after))
	}
	if err := j.Append(journal.Entry{ID: "e2", Operation: "post", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got, err := j.Recent(5); err != nil || len(got) != 2 || got[1].ID != "e2" {
		t.Errorf("the daemon's entries after status ran: %+v, %v", got, err)
	}
}
