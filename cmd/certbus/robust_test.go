package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
)

// hookRun runs the real hook binary like certbot would.
func hookRun(t *testing.T, e *env, args []string, extra ...string) (string, int) {
	t.Helper()
	return e.run(t, buildBinary(t), append([]string{"hook"}, args...), extra...)
}

// run runs bin ARGS with the env's bus and config in its environment
// (and extra) and returns its combined output and exit status.
func (e *env) run(t *testing.T, bin string, args []string, extra ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "CERTBUS_BUS="+e.bus.Address, "CERTBUS_CONFIG="+e.config), extra...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func deployEnv(live string, names ...string) []string {
	return []string{"RENEWED_LINEAGE=" + live, "RENEWED_DOMAINS=" + strings.Join(names, " ")}
}

func TestRenewalWhileStoppedIsCaughtUp(t *testing.T) {
	e := newEnv(t, false, oneApp)
	l1 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, l1)
	d := startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "first-start catch-up")
	if err := d.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if d.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("serve exited %d on SIGTERM, want 0", d.cmd.ProcessState.ExitCode())
	}
	// certbot renews with the daemon stopped and no hook at all.
	l2 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 2, l2)
	startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 2 }, "catch-up reload after the missed renewal")
	got, _ := os.ReadFile(filepath.Join(e.dest, "a.test", "fullchain.pem"))
	if !bytes.Equal(got, l2.FullchainPEM()) {
		t.Error("the missed renewal was not installed")
	}
	_ = live
	// A third start with nothing new does nothing.
	time.Sleep(300 * time.Millisecond)
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads, want 2", n)
	}
}

func TestWaitAnswersAfterRestart(t *testing.T) {
	e := newEnv(t, false, oneApp)
	d := startDaemon(t, e.bus.Address, e.config)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	c := e.client(t)
	id, err := c.Notify(context.Background(), "deploy", hooks.LineageDomains(live, []string{"a.test"}))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		res, err := c.Wait(context.Background(), id, 100)
		return err == nil && len(res) == 1 && res[0].Status == "ok"
	}, "the debounced reload's result")
	d.stop(t)
	startDaemon(t, e.bus.Address, e.config)
	res, err := e.client(t).Wait(context.Background(), id, 2*time.Second)
	if err != nil || len(res) != 1 || res[0].App != "web" || res[0].Status != "ok" {
		t.Fatalf("Wait after restart: %+v %v", res, err)
	}
}

func TestSighupReloadsConfigAndRefusesABadDropIn(t *testing.T) {
	e := newEnv(t, false, oneApp)
	d := startDaemon(t, e.bus.Address, e.config)
	dropins := filepath.Join(e.dir, "apps.d")
	os.MkdirAll(dropins, 0o755)
	bad := filepath.Join(dropins, "20-bad.yaml")
	os.WriteFile(bad, []byte("apps:\n  - name: extra\n    type: service\n    domains: ['*']\n    relaod: {}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(d.log.String(), "config reload refused") }, "the refusal in the log")
	if !strings.Contains(d.log.String(), "20-bad.yaml:5") {
		t.Errorf("refusal does not name the drop-in's file and line:\n%s", d.log.String())
	}
	// The old config still runs: web still works.
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	if out, code := hookRun(t, e, []string{"deploy", "--wait", "--timeout", "10s"}, deployEnv(live, "a.test")...); code != 0 || !strings.Contains(out, "web: pending") {
		t.Fatalf("deploy after a refused reload: %d\n%s", code, out)
	}
	// A good drop-in is taken.
	os.Remove(bad)
	os.WriteFile(filepath.Join(dropins, "30-extra.yaml"), []byte("apps:\n  - name: extra\n    type: service\n    domains: ['*']\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(d.log.String(), "config reloaded") }, "the reload")
	out, code := hookRun(t, e, []string{"pre", "--wait"})
	if code != 0 || !strings.Contains(out, "extra: ok") {
		t.Errorf("new app not running after SIGHUP: %d\n%s", code, out)
	}
}

func TestHungAppIsCutOffAndSiblingReloads(t *testing.T) {
	e := newEnv(t, false, `reload: {timeout: 1s}
apps:
  - name: hung
    type: service
    domains: ["*"]
    reload: {command: ["/bin/sleep", "3600"]}
  - name: sibling
    type: service
    domains: ["*"]
    reload: {command: ["$RELOAD"]}
`)
	// The env's reload section is replaced by the app-level one above.
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.Replace(b, []byte("reload: {debounce: 200ms, timeout: 10s}\n"), nil, 1), 0o644)
	startDaemon(t, e.bus.Address, e.config)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	hookRun(t, e, []string{"pre"})
	hookRun(t, e, []string{"deploy"}, deployEnv(live, "a.test")...)
	start := time.Now()
	out, code := hookRun(t, e, []string{"post", "--wait", "--timeout", "20s"})
	took := time.Since(start)
	if code != 4 || !strings.Contains(out, "hung") || strings.Contains(out, "sibling: failed") {
		t.Errorf("post --wait: exit %d, want 4 naming the hung app\n%s", code, out)
	}
	if took > 10*time.Second {
		t.Errorf("post --wait took %s; the hung app was not cut off at its timeout", took)
	}
	if e.reloadCount() != 1 {
		t.Errorf("sibling reloaded %d times, want 1", e.reloadCount())
	}
	// Later events still flow.
	if out, code := hookRun(t, e, []string{"pre", "--wait"}); code != 0 {
		t.Errorf("next event: %d\n%s", code, out)
	}
}

func TestPlantedSymlinkIsRefused(t *testing.T) {
	e := newEnv(t, false, `apps:
  - name: svc
    type: service
    domains: [a.test]
    copy: {certificate: "$DEST/svc/cert.pem", private_key: "$DEST/svc/key.pem", owner: root, group: root}
`)
	// A directory the service user can write, and a symlink it planted
	// there pointing at a file root owns.
	svc := filepath.Join(e.dest, "svc")
	os.MkdirAll(svc, 0o755)
	os.Chown(svc, testutil.Nobody, testutil.Nobody)
	victim := filepath.Join(e.dest, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.Symlink(victim, filepath.Join(svc, "key.pem"))
	startDaemon(t, e.bus.Address, e.config)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	out, code := hookRun(t, e, []string{"deploy", "--wait"}, deployEnv(live, "a.test")...)
	if code != 4 || !strings.Contains(out, "svc: failed") || !strings.Contains(out, "unsafe") {
		t.Errorf("deploy into a user-writable dir: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Error("a write went through the planted symlink")
	}
	if _, err := os.Lstat(filepath.Join(svc, "cert.pem")); !os.IsNotExist(err) {
		t.Error("a file was written into the refused directory")
	}
}

// TestKillNineStorm: 100 renewals, the daemon killed with SIGKILL at random
// moments and restarted, while a reader parses the installed files in a
// loop. In the end every app holds the newest certificate, and no reader
// ever saw a torn file or a mismatched pair in the combined file.
func TestKillNineStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm")
	}
	e := newEnv(t, false, `apps:
  - name: split
    type: service
    domains: ["*"]
    copy: {certificate: "$DEST/split/{domain}/cert.pem", private_key: "$DEST/split/{domain}/key.pem"}
    reload: {command: ["$RELOAD"]}
  - name: combined
    type: service
    domains: ["*"]
    copy: {certificate: "$DEST/combined/{domain}.pem", private_key: "$DEST/combined/{domain}.pem"}
`)
	names := []string{"s1.test", "s2.test", "s3.test", "s4.test"}
	leafs := map[string]*testcerts.Leaf{}
	versions := map[string]int{}
	renew := func(n string) string {
		l, err := testcerts.Shared().Issue([]string{n}, testcerts.Options{})
		if err != nil {
			t.Fatal(err)
		}
		versions[n]++
		leafs[n] = l
		return testcerts.MustLineage(t, e.le, n, versions[n], l)
	}
	for _, n := range names {
		renew(n)
	}
	var stop atomic.Bool
	var torn atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	var firstBad atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for _, n := range names {
				if b, err := os.ReadFile(filepath.Join(e.dest, "combined", n+".pem")); err == nil {
					reads.Add(1)
					if err := checkCombined(b); err != nil {
						torn.Add(1)
						firstBad.CompareAndSwap(nil, err.Error())
					}
				}
				if b, err := os.ReadFile(filepath.Join(e.dest, "split", n, "cert.pem")); err == nil {
					reads.Add(1)
					if blk, _ := pem.Decode(b); blk == nil {
						torn.Add(1)
					} else if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
						torn.Add(1)
					}
				}
			}
		}
	}()
	d := startDaemon(t, e.bus.Address, e.config)
	rng := rand.New(rand.NewSource(1))
	kills := 0
	for i := 0; i < 100; i++ {
		n := names[rng.Intn(len(names))]
		live := renew(n)
		if _, code := hookRun(t, e, []string{"deploy"}, deployEnv(live, n)...); code != 0 {
			t.Fatalf("deploy %d: exit %d", i, code)
		}
		if rng.Intn(10) == 0 {
			time.Sleep(time.Duration(rng.Intn(20)) * time.Millisecond)
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
			d.done <- nil
			kills++
			if rng.Intn(2) == 0 {
				// Renewals while it is dead: some spooled, one with no hook.
				n := names[rng.Intn(len(names))]
				hookRun(t, e, []string{"deploy"}, deployEnv(renew(n), n)...)
				renew(names[rng.Intn(len(names))])
			}
			d = startDaemon(t, e.bus.Address, e.config)
		}
	}
	// Let the last debounce fire, then check.
	testutil.WaitFor(t, 20*time.Second, func() bool {
		for _, n := range names {
			b, _ := os.ReadFile(filepath.Join(e.dest, "split", n, "cert.pem"))
			c, _ := os.ReadFile(filepath.Join(e.dest, "combined", n+".pem"))
			if !bytes.Equal(b, leafs[n].FullchainPEM()) || !bytes.HasSuffix(c, leafs[n].FullchainPEM()) {
				return false
			}
		}
		return true
	}, "every app on the newest certificate of each domain")
	stop.Store(true)
	wg.Wait()
	t.Logf("%d kills, %d reads, %d reloads", kills, reads.Load(), e.reloadCount())
	if kills == 0 {
		t.Error("the storm killed nothing")
	}
	if torn.Load() > 0 {
		t.Errorf("%d reads saw a torn or mismatched file (first: %v)", torn.Load(), firstBad.Load())
	}
}

// checkCombined parses a key+chain file and checks the pair matches.
func checkCombined(b []byte) error {
	_, err := tls.X509KeyPair(b, b)
	if err != nil {
		return fmt.Errorf("combined file: %w", err)
	}
	return nil
}

// sourceStore is acme.sh's store of a.test, under the env's source_dirs.
type sourceStore struct{ dir string }

func newSourceStore(t *testing.T, e *env) sourceStore {
	t.Helper()
	src := sourceStore{filepath.Join(e.dir, "acme.sh", "a.test")}
	if err := os.MkdirAll(src.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, append([]byte("source_dirs: ["+filepath.Dir(src.dir)+"]\n"), b...), 0o644)
	return src
}

// write puts l in the store, as acme.sh renewing in place.
func (s sourceStore) write(l *testcerts.Leaf) {
	os.WriteFile(filepath.Join(s.dir, "a.test.cer"), l.CertPEM, 0o644)
	os.WriteFile(filepath.Join(s.dir, "a.test.key"), l.KeyPEM, 0o600)
	os.WriteFile(filepath.Join(s.dir, "fullchain.cer"), l.FullchainPEM(), 0o644)
}

// deploy writes l and sends its deploy, as acme.sh's hook does.
func (s sourceStore) deploy(t *testing.T, e *env, l *testcerts.Leaf) {
	t.Helper()
	s.write(l)
	doms := map[string]map[string]string{"a.test": {
		"certificate": filepath.Join(s.dir, "a.test.cer"), "private_key": filepath.Join(s.dir, "a.test.key"),
		"fullchain": filepath.Join(s.dir, "fullchain.cer")}}
	if _, err := e.client(t).Notify(context.Background(), "deploy", doms); err != nil {
		t.Fatal(err)
	}
}

// A client with its own store (acme.sh, lego) renews in place while the
// daemon is stopped: the journal knows the files its hook last handed over,
// and catch-up reads them again.
func TestSourceDirRenewalWhileStoppedIsCaughtUp(t *testing.T) {
	e := newEnv(t, false, oneApp)
	src := newSourceStore(t, e)
	d := startDaemon(t, e.bus.Address, e.config)
	src.deploy(t, e, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "debounced reload")
	d.stop(t)
	l2 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	src.write(l2) // renewed in place, no hook
	startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 2 }, "catch-up of the source dir's renewal")
	got, _ := os.ReadFile(filepath.Join(e.dest, "a.test", "fullchain.pem"))
	if !bytes.Equal(got, l2.FullchainPEM()) {
		t.Error("the in-place renewal was not installed")
	}
}

// A domain that moved from acme.sh (source_dirs) to certbot keeps
// certbot's certificate across restarts: the journal's older acme.sh
// deploy is not caught up to.
func TestSourceDirSupersededByCertbotStays(t *testing.T) {
	e := newEnv(t, false, oneApp)
	src := newSourceStore(t, e)
	d := startDaemon(t, e.bus.Address, e.config)
	l1 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	src.deploy(t, e, l1)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the acme.sh deploy's reload")
	l2 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "a.test", 1, l2)
	hookRun(t, e, []string{"pre"})
	hookRun(t, e, []string{"deploy"}, deployEnv(live, "a.test")...)
	if out, code := hookRun(t, e, []string{"post", "--wait"}); code != 0 {
		t.Fatalf("post: exit %d\n%s", code, out)
	}
	installed := filepath.Join(e.dest, "a.test", "fullchain.pem")
	for i := range 2 {
		d.stop(t)
		d = startDaemon(t, e.bus.Address, e.config)
		time.Sleep(time.Second) // past the debounce a catch-up deploy would start
		if got, _ := os.ReadFile(installed); !bytes.Equal(got, l2.FullchainPEM()) {
			t.Fatalf("restart %d: the installed certificate is not certbot's (acme.sh's old one: %v)", i+1, bytes.Equal(got, l1.FullchainPEM()))
		}
	}
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads, want 2 (acme.sh's deploy, certbot's run; none at the restarts)", n)
	}
}

// A config reload between certbot's pre and post keeps the pending change:
// still exactly one reload, at post.
func TestSighupInsideARunKeepsOneReload(t *testing.T) {
	e := newEnv(t, false, oneApp)
	d := startDaemon(t, e.bus.Address, e.config)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	hookRun(t, e, []string{"pre"})
	hookRun(t, e, []string{"deploy"}, deployEnv(live, "a.test")...)
	// A harmless change: a longer reload timeout.
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.Replace(b, []byte("timeout: 10s"), []byte("timeout: 20s"), 1), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(d.log.String(), "config reloaded") }, "the reload")
	time.Sleep(400 * time.Millisecond) // past the debounce: nothing may fire inside the run
	if n := e.reloadCount(); n != 0 {
		t.Fatalf("%d reloads inside the run after SIGHUP", n)
	}
	out, code := hookRun(t, e, []string{"post", "--wait"})
	if code != 0 || !strings.Contains(out, "web: ok") {
		t.Fatalf("post: %d\n%s", code, out)
	}
	if n := e.reloadCount(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}
