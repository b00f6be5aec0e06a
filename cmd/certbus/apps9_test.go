package main

// Real daemons (nginx, HAProxy, PostgreSQL, Postfix, Dovecot, coturn, and a
// Go server using certreload) started on loopback with test configurations
// from testdata/apps9, each renewed through the real hook binary and a real
// `certbus serve` on a private bus, then checked by a handshake (STARTTLS
// where the protocol has it) that must show the new certificate.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certbus/certbus/certreload"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
	"github.com/certbus/certbus/internal/verify"
)

// setApps9 appends the apps: section to the environment's config, with
// every $NAME of vars replaced.
func (e *env) setApps9(t *testing.T, yaml string, vars map[string]string) {
	t.Helper()
	body, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(body, expand9(yaml, vars)...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// expand9 replaces $NAME (longest names first) in s.
func expand9(s string, vars map[string]string) string {
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, "$"+k, v)
	}
	// Longer names first, so that $DEST is not eaten by $D.
	for i := 0; i < len(pairs); i += 2 {
		for j := i + 2; j < len(pairs); j += 2 {
			if len(pairs[j]) > len(pairs[i]) {
				pairs[i], pairs[i+1], pairs[j], pairs[j+1] = pairs[j], pairs[j+1], pairs[i], pairs[i+1]
			}
		}
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// template9 reads testdata/apps9/name and expands it.
func template9(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "apps9", name))
	if err != nil {
		t.Fatal(err)
	}
	return expand9(string(b), vars)
}

// hook9 runs `certbus hook ARGS` as certbot would and returns its output
// and exit code.
func (e *env) hook9(t *testing.T, extraEnv []string, args ...string) (string, int) {
	t.Helper()
	return hookRun(t, e, args, extraEnv...)
}

// renewal9 is one certbot run: pre, deploy of a new version of lineage
// name, post --wait. It returns the new leaf and post's output and exit
// code (0: every app ok, 4: one failed).
func (e *env) renewal9(t *testing.T, name string, version int, names ...string) (*testcerts.Leaf, string, int) {
	t.Helper()
	leaf := testcerts.MustIssue(t, names, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, name, version, leaf)
	if out, code := e.hook9(t, nil, "pre"); code != 0 {
		t.Fatalf("hook pre: exit %d\n%s", code, out)
	}
	env := []string{"RENEWED_LINEAGE=" + live, "RENEWED_DOMAINS=" + strings.Join(names, " ")}
	if out, code := e.hook9(t, env, "deploy"); code != 0 {
		t.Fatalf("hook deploy: exit %d\n%s", code, out)
	}
	start := time.Now()
	out, code := e.hook9(t, nil, "post", "--wait", "--timeout", "90s")
	t.Logf("renewal %s v%d: post --wait took %v, exit %d", name, version, time.Since(start).Round(time.Millisecond), code)
	return leaf, out, code
}

// mustRenew9 is renewal that must succeed.
func (e *env) mustRenew9(t *testing.T, name string, version int, names ...string) *testcerts.Leaf {
	t.Helper()
	leaf, out, code := e.renewal9(t, name, version, names...)
	if code != 0 {
		t.Fatalf("renewal of %s: hook post --wait exit %d, want 0\n%s", name, code, out)
	}
	return leaf
}

// served9 returns the fingerprint of the leaf the target presents.
func served9(t *testing.T, target verify.Target) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := verify.Leaf(ctx, target)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return verify.Fingerprint(c)
}

// startProc9 starts a daemon in the foreground, its output in
// logPath, and stops it by PID (SIGTERM, then SIGKILL after 10s) when the
// test ends; its log is shown if the test failed.
func startProc9(t *testing.T, logPath string, argv ...string) *exec.Cmd {
	t.Helper()
	return startCmd9(t, logPath, exec.Command(argv[0], argv[1:]...))
}

// startCmd9 is startDaemonProc for a prepared command.
func startCmd9(t *testing.T, logPath string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	argv := cmd.Args
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			t.Logf("%s had exited before the end of the test: %v", argv[0], cmd.ProcessState)
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", argv[0], tail9(string(b), 4000))
		}
	})
	return cmd
}

// waitServed9 waits until target presents the leaf with fingerprint fp.
func waitServed9(t *testing.T, target verify.Target, fp, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := verify.Expect(ctx, target, fp, 100*time.Millisecond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// servedSoon9 is what target serves once it serves want, or after 2 s:
// `post --wait` returns once a handshake showed the new leaf, and a daemon
// with several workers (nginx, postfix) may let a draining old one take a
// connection or two just after that.
func servedSoon9(t *testing.T, target verify.Target, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if verify.Expect(ctx, target, want, 20*time.Millisecond) == nil {
		return want
	}
	return served9(t, target)
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(strings.SplitN(string(b), " ", 2)[0])
			out = append(out, child)
		}
	}
	return out
}

// combined9 is the key followed by the full chain, the one-file layout.
func combined9(l *testcerts.Leaf) []byte {
	return append(append([]byte{}, l.KeyPEM...), l.FullchainPEM()...)
}

func TestNginxReadsLineageTestsAndReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "nginx")
	e := newEnv(t, false, "")
	dir := t.TempDir()
	nginx, _ := testutil.LookPath("nginx")
	port := testutil.FreePort(t)
	v1 := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 1, v1)
	vars := map[string]string{"DIR": dir, "LE": e.le, "PORT": strconv.Itoa(port), "NGINX": nginx, "CONF": filepath.Join(dir, "nginx.conf")}
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(template9(t, "nginx.conf", vars)), 0o644)
	os.WriteFile(filepath.Join(dir, "extra.conf"), nil, 0o644)
	master := startProc9(t, filepath.Join(dir, "nginx.log"), nginx, "-c", vars["CONF"], "-e", filepath.Join(dir, "error.log"))
	target := verify.Target{Address: "127.0.0.1:" + vars["PORT"], ServerName: "a.test"}
	waitServed9(t, target, v1.Fingerprint, "nginx serving v1")
	// No domains: in the config: the app discovers them from the
	// certificates nginx -T names under letsencrypt_dir.
	e.setApps9(t, template9(t, "nginx.yaml", vars), nil)
	d := startDaemon(t, e.bus.Address, e.config)
	// At start the daemon replays the deploy of v1 it never saw (catch-up).
	// nginx reads the lineage itself, so a renewal racing that replay would
	// make its verification see v2 where it expects v1: let it finish.
	testutil.WaitFor(t, 15*time.Second, func() bool { return logHas9(d.log.String(), "apps.web", "reloaded") }, "the catch-up of v1")

	v2 := e.mustRenew9(t, "a.test", 2, "a.test", "www.a.test")
	// The reload is verified once a handshake shows v2; the old worker may
	// still take a connection while it drains. What nginx serves from now
	// on is what its one remaining worker serves.
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(childPIDs(master.Process.Pid)) == 1 }, "nginx's old worker to exit")
	if got := servedSoon9(t, target, v2.Fingerprint); got != v2.Fingerprint {
		t.Fatalf("nginx serves %s after the renewal, want v2 %s", got, v2.Fingerprint)
	}

	// A configuration nginx -t refuses: no reload is sent, the app fails,
	// and nginx goes on serving v2.
	os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("this is not nginx syntax\n"), 0o644)
	_, out, code := e.renewal9(t, "a.test", 3, "a.test", "www.a.test")
	if code != 4 || !strings.Contains(out, "configuration test failed") {
		t.Errorf("renewal with a broken config: exit %d, want 4 saying the configuration test failed\n%s", code, out)
	}
	if got := served9(t, target); got != v2.Fingerprint {
		t.Errorf("nginx serves %s after a refused reload, want v2", got)
	}
}

func TestHAProxyRuntimeAPINoReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "haproxy")
	e := newEnv(t, false, "")
	dir := t.TempDir()
	haproxy, _ := testutil.LookPath("haproxy")
	port := testutil.FreePort(t)
	certs := filepath.Join(e.dest, "certs")
	os.MkdirAll(certs, 0o755)
	v1 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 1, v1)
	os.WriteFile(filepath.Join(certs, "a.test.pem"), combined9(v1), 0o600)
	vars := map[string]string{"DIR": dir, "CERTS": certs, "PORT": strconv.Itoa(port), "DEST": e.dest}
	conf := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(conf, []byte(template9(t, "haproxy.cfg", vars)), 0o644)
	// Master-worker mode in the foreground; SIGUSR2 to the master reloads.
	proc := startProc9(t, filepath.Join(dir, "haproxy.log"), haproxy, "-W", "-db", "-f", conf)
	target := verify.Target{Address: "127.0.0.1:" + vars["PORT"], ServerName: "a.test"}
	waitServed9(t, target, v1.Fingerprint, "haproxy serving v1")
	// The fallback reload counts its runs and really reloads HAProxy.
	reloads := filepath.Join(dir, "reloads")
	script := filepath.Join(dir, "reload.sh")
	os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\necho reload >> %s\nkill -USR2 %d\n", reloads, proc.Process.Pid)), 0o755)
	vars["RELOAD"] = script
	e.setApps9(t, template9(t, "haproxy.yaml", vars), nil)
	startDaemon(t, e.bus.Address, e.config)

	// Load: clients with a new connection (a full handshake) per request,
	// and keep-alive clients, all through the rotations.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var seenMu sync.Mutex
	seen := map[string]int{} // leaf fingerprint -> requests that saw it
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := func(keepAlive bool) {
		defer wg.Done()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"}, DisableKeepAlives: !keepAlive}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get("https://" + target.Address + "/")
			if err == nil {
				resp.Body.Close()
				seenMu.Lock()
				seen[verify.Fingerprint(resp.TLS.PeerCertificates[0])]++
				seenMu.Unlock()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			ok.Add(1)
		}
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go client(i%4 == 3)
	}
	const rotations = 3
	sawCount := func(fp string) int { seenMu.Lock(); defer seenMu.Unlock(); return seen[fp] }
	distinct := func() int { seenMu.Lock(); defer seenMu.Unlock(); return len(seen) }
	// Traffic on v1 first, then on each new certificate: waited for, not
	// slept for, so a loaded machine cannot make a window empty.
	testutil.WaitFor(t, 10*time.Second, func() bool { return distinct() >= 1 }, "clients served with v1")
	var last *testcerts.Leaf
	for v := 2; v < 2+rotations; v++ {
		last = e.mustRenew9(t, "a.test", v, "a.test")
		if got := servedSoon9(t, target, last.Fingerprint); got != last.Fingerprint {
			t.Fatalf("haproxy serves %s after rotation %d, want %s", got, v, last.Fingerprint)
		}
		fp := last.Fingerprint
		testutil.WaitFor(t, 10*time.Second, func() bool { return sawCount(fp) >= 20 }, fmt.Sprintf("client traffic on rotation %d", v))
	}
	close(stop)
	wg.Wait()
	t.Logf("haproxy: %d requests during %d rotations over the runtime API, %d failed; %d certificates seen by clients", ok.Load(), rotations, failed.Load(), len(seen))
	if len(seen) != rotations+1 {
		t.Errorf("clients saw %d distinct certificates, want %d (v1 and each rotation)", len(seen), rotations+1)
	}
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d failed requests (first: %v), %d ok; want none failed", failed.Load(), firstErr.Load(), ok.Load())
	}
	if b, _ := os.ReadFile(reloads); len(b) != 0 {
		t.Errorf("HAProxy was reloaded %d times; the runtime API should have made it unnecessary", strings.Count(string(b), "\n"))
	}
	if got, _ := os.ReadFile(filepath.Join(certs, "a.test.pem")); string(got) != string(combined9(last)) {
		t.Error("the combined PEM file on disk is not key + full chain of the last renewal")
	}

	// A certificate HAProxy has not loaded yet cannot go through the
	// runtime API: the app falls back to reloading, which loads the file.
	b1 := e.mustRenew9(t, "b.test", 1, "b.test")
	waitServed9(t, verify.Target{Address: target.Address, ServerName: "b.test"}, b1.Fingerprint, "haproxy serving b.test after the fallback reload")
	if b, _ := os.ReadFile(reloads); strings.Count(string(b), "\n") != 1 {
		t.Errorf("reloads for a new certificate: %q, want exactly one", b)
	}
}

func TestPostgreSQLCopiesWhereConfigPointsAndReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "setpriv", "pg_ctlcluster=postgresql")
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testutil.Need(t, "/usr/lib/postgresql/VERSION/bin/initdb=postgresql")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	e := newEnv(t, false, "")
	asPostgres := []string{"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"}
	root := filepath.Join(e.dest, "pg")
	data := filepath.Join(root, "data")
	os.MkdirAll(root, 0o700)
	if out, err := exec.Command("chown", "postgres:postgres", root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	initdb := exec.Command(asPostgres[0], append(asPostgres[1:], filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")...)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := testutil.FreePort(t)
	v1 := testcerts.MustIssue(t, []string{"db.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "db.test", 1, v1)
	write := func(name string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, "data", name)
		os.WriteFile(p, data, mode)
		exec.Command("chown", "postgres:postgres", p).Run()
	}
	write("server.crt", v1.FullchainPEM(), 0o644)
	write("server.key", v1.KeyPEM, 0o600)
	vars := map[string]string{"ROOT": root, "DATA": data, "PORT": strconv.Itoa(port), "PGBIN": bin}
	f, _ := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(template9(t, "postgresql.conf", vars))
	f.Close()
	startProc9(t, filepath.Join(root, "postgres.log"), append(asPostgres, filepath.Join(bin, "postgres"), "-D", data)...)
	target := verify.Target{Address: "127.0.0.1:" + vars["PORT"], ServerName: "db.test", StartTLS: "postgres"}
	waitServed9(t, target, v1.Fingerprint, "postgres serving v1")
	// Paths, port and owner come from postgresql.conf and the type's
	// defaults; only the reload differs (no systemd here).
	e.setApps9(t, template9(t, "postgresql.yaml", vars), nil)
	startDaemon(t, e.bus.Address, e.config)

	v2 := e.mustRenew9(t, "db.test", 2, "db.test")
	if got := servedSoon9(t, target, v2.Fingerprint); got != v2.Fingerprint {
		t.Fatalf("postgres serves %s after the renewal, want v2 %s", got, v2.Fingerprint)
	}
	fi, err := os.Stat(filepath.Join(data, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || !ownedBy9(st.Uid, "postgres") {
		t.Errorf("server.key: mode %v uid %d, want 0600 owned by postgres", fi.Mode().Perm(), st.Uid)
	}
}

// logHas9 reports whether one line of a daemon log holds every word.
func logHas9(log string, words ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}

func tail9(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func ownedBy9(uid uint32, name string) bool {
	out, err := exec.Command("id", "-u", name).Output()
	return err == nil && strings.TrimSpace(string(out)) == strconv.Itoa(int(uid))
}

func TestPostfixChainFileAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "postfix")
	e := newEnv(t, false, "")
	root := filepath.Join(e.dest, "postfix")
	for _, d := range []string{"etc", "spool", "data", "tls"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	exec.Command("chown", "postfix", filepath.Join(root, "data")).Run()
	port := testutil.FreePort(t)
	v1 := testcerts.MustIssue(t, []string{"mail.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "mail.test", 1, v1)
	os.WriteFile(filepath.Join(root, "tls", "mail.test.pem"), combined9(v1), 0o600)
	vars := map[string]string{"ROOT": root, "PORT": strconv.Itoa(port)}
	os.WriteFile(filepath.Join(root, "etc", "main.cf"), []byte(template9(t, "postfix-main.cf", vars)), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "master.cf"), []byte(template9(t, "postfix-master.cf", vars)), 0o644)
	postfix, _ := testutil.LookPath("postfix")
	// start-fg keeps the master in the foreground, our child.
	startProc9(t, filepath.Join(root, "postfix.log"), postfix, "-c", filepath.Join(root, "etc"), "start-fg")
	target := verify.Target{Address: "127.0.0.1:" + vars["PORT"], ServerName: "mail.test", StartTLS: "smtp"}
	waitServed9(t, target, v1.Fingerprint, "postfix serving v1")
	// The reload is the type's default: postfix -c CONFIG_DIR reload.
	e.setApps9(t, template9(t, "postfix.yaml", vars), nil)
	startDaemon(t, e.bus.Address, e.config)

	v2 := e.mustRenew9(t, "mail.test", 2, "mail.test")
	if got := servedSoon9(t, target, v2.Fingerprint); got != v2.Fingerprint {
		t.Fatalf("postfix serves %s after the renewal, want v2 %s", got, v2.Fingerprint)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "tls", "mail.test.pem")); string(got) != string(combined9(v2)) {
		t.Error("the chain file is not the key followed by the full chain")
	}
}

func TestDovecotCopyAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "dovecot", "doveadm=dovecot-core", "/usr/lib/dovecot/imap-login=dovecot-imapd")
	e := newEnv(t, false, "")
	root := filepath.Join(e.dest, "dovecot")
	os.MkdirAll(filepath.Join(root, "run"), 0o755)
	imap, imaps := testutil.FreePort(t), testutil.FreePort(t)
	v1 := testcerts.MustIssue(t, []string{"mail.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "mail.test", 1, v1)
	os.MkdirAll(filepath.Join(root, "mail.test"), 0o755)
	os.WriteFile(filepath.Join(root, "mail.test", "fullchain.pem"), v1.FullchainPEM(), 0o644)
	os.WriteFile(filepath.Join(root, "mail.test", "privkey.pem"), v1.KeyPEM, 0o600)
	vars := map[string]string{"ROOT": root, "IMAP": strconv.Itoa(imap), "IMAPS": strconv.Itoa(imaps)}
	conf := filepath.Join(root, "dovecot.conf")
	vars["CONF"] = conf
	os.WriteFile(conf, []byte(template9(t, "dovecot.conf", vars)), 0o644)
	dovecot, _ := testutil.LookPath("dovecot")
	startProc9(t, filepath.Join(root, "dovecot.out"), dovecot, "-F", "-c", conf)
	starttls := verify.Target{Address: "127.0.0.1:" + vars["IMAP"], ServerName: "mail.test", StartTLS: "imap"}
	implicit := verify.Target{Address: "127.0.0.1:" + vars["IMAPS"], ServerName: "mail.test"}
	waitServed9(t, starttls, v1.Fingerprint, "dovecot serving v1")
	// The reload is the type's default: doveadm -c CONFIG reload.
	e.setApps9(t, template9(t, "dovecot.yaml", vars), nil)
	startDaemon(t, e.bus.Address, e.config)

	v2 := e.mustRenew9(t, "mail.test", 2, "mail.test")
	for _, tg := range []verify.Target{starttls, implicit} {
		if got := servedSoon9(t, tg, v2.Fingerprint); got != v2.Fingerprint {
			t.Errorf("dovecot at %s serves %s after the renewal, want v2 %s", tg, got, v2.Fingerprint)
		}
	}
}

func TestCoturnSIGUSR2(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	testutil.Need(t, "turnserver")
	e := newEnv(t, false, "")
	dir := t.TempDir()
	certs := filepath.Join(e.dest, "coturn")
	os.MkdirAll(certs, 0o755)
	v1 := testcerts.MustIssue(t, []string{"turn.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "turn.test", 1, v1)
	os.WriteFile(filepath.Join(certs, "cert.pem"), v1.FullchainPEM(), 0o644)
	os.WriteFile(filepath.Join(certs, "pkey.pem"), v1.KeyPEM, 0o600)
	tlsPort := testutil.FreePort(t)
	pidFile := filepath.Join(dir, "turnserver.pid")
	turnserver, _ := testutil.LookPath("turnserver")
	startProc9(t, filepath.Join(dir, "turnserver.log"), turnserver, "-n", "--listening-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(testutil.FreePort(t)), "--tls-listening-port="+strconv.Itoa(tlsPort),
		"--cert="+filepath.Join(certs, "cert.pem"), "--pkey="+filepath.Join(certs, "pkey.pem"), "--pidfile="+pidFile,
		"--db="+filepath.Join(dir, "turndb"), "--no-cli", "--no-dtls", "--no-udp", "--log-file=stdout", "--simple-log")
	target := verify.Target{Address: "127.0.0.1:" + strconv.Itoa(tlsPort), ServerName: "turn.test"}
	waitServed9(t, target, v1.Fingerprint, "turnserver serving v1")
	testutil.WaitFor(t, 10*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil }, "turnserver's pid file")
	vars := map[string]string{"CERTS": certs, "PIDFILE": pidFile, "PORT": strconv.Itoa(tlsPort), "RELOAD": filepath.Join(dir, "fallback.sh")}
	os.WriteFile(vars["RELOAD"], []byte("#!/bin/sh\ntouch "+filepath.Join(dir, "fallback-ran")+"\n"), 0o755)
	e.setApps9(t, template9(t, "coturn.yaml", vars), nil)
	startDaemon(t, e.bus.Address, e.config)

	v2 := e.mustRenew9(t, "turn.test", 2, "turn.test")
	if got := servedSoon9(t, target, v2.Fingerprint); got != v2.Fingerprint {
		t.Fatalf("turnserver serves %s after the renewal, want v2 %s", got, v2.Fingerprint)
	}
	if _, err := os.Stat(filepath.Join(dir, "fallback-ran")); err == nil {
		t.Error("the restart fallback ran: SIGUSR2 alone should have done it")
	}
	fi, _ := os.Stat(filepath.Join(certs, "pkey.pem"))
	if st := fi.Sys().(*syscall.Stat_t); !ownedBy9(st.Uid, "turnserver") || fi.Mode().Perm() != 0o600 {
		t.Errorf("pkey.pem: uid %d mode %v, want turnserver's, 0600", st.Uid, fi.Mode().Perm())
	}
}

// TestHelperGoServer is not a test: run with CERTBUS_TEST_GOSERVER set, it
// is a Go TLS server using certreload with SIGHUP (seed 003's pattern), for
// TestSignalToGoServer.
func TestHelperGoServer(t *testing.T) {
	spec := os.Getenv("CERTBUS_TEST_GOSERVER")
	if spec == "" {
		return
	}
	// cert key pidfile address
	f := strings.Fields(spec)
	src, err := certreload.New(certreload.Options{CertFile: f[0], KeyFile: f[1], SIGHUP: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := src.Watch(nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := tls.Listen("tcp", f[3], &tls.Config{GetCertificate: src.GetCertificate})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The pid file appears once SIGHUP is handled.
	os.WriteFile(f[2], []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))
	os.Exit(0)
}

func TestSignalToGoServer(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	e := newEnv(t, false, "")
	dir := t.TempDir()
	own := filepath.Join(e.dest, "go")
	os.MkdirAll(own, 0o755)
	v1 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 1, v1)
	os.WriteFile(filepath.Join(own, "fullchain.pem"), v1.FullchainPEM(), 0o644)
	os.WriteFile(filepath.Join(own, "privkey.pem"), v1.KeyPEM, 0o600)
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	pidFile := filepath.Join(dir, "go.pid")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperGoServer$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("CERTBUS_TEST_GOSERVER=%s %s %s %s", filepath.Join(own, "fullchain.pem"), filepath.Join(own, "privkey.pem"), pidFile, addr))
	startCmd9(t, filepath.Join(dir, "go.log"), cmd)
	testutil.WaitFor(t, 10*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil }, "the Go server's pid file")
	target := verify.Target{Address: addr, ServerName: "a.test"}
	waitServed9(t, target, v1.Fingerprint, "the Go server serving v1")
	e.setApps9(t, template9(t, "signal.yaml", map[string]string{"OWN": own, "PIDFILE": pidFile, "ADDR": addr}), nil)
	startDaemon(t, e.bus.Address, e.config)

	v2 := e.mustRenew9(t, "a.test", 2, "a.test")
	if got := servedSoon9(t, target, v2.Fingerprint); got != v2.Fingerprint {
		t.Fatalf("the Go server serves %s after the renewal, want v2 %s", got, v2.Fingerprint)
	}
}
