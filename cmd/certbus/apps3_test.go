package main

// Tests of the apache, ejabberd and matrix-synapse app types against real
// daemons on loopback, driven through the real hooks and `certbus serve`
// on a private bus. There is no systemd here, so every app's reload is a
// reload.command standing in for its unit.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certbus/certbus/internal/install/installtest"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
	"github.com/certbus/certbus/internal/verify"
)

// a3Config replaces the env's config with the usual header and apps.
func a3Config(t *testing.T, e *env, apps string) {
	t.Helper()
	body := fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps_dir: %s\nreload: {debounce: 200ms, timeout: 10s}\n",
		e.le, e.state, filepath.Join(e.dir, "apps.d"))
	if err := os.WriteFile(e.config, []byte(body+apps), 0o644); err != nil {
		t.Fatal(err)
	}
}

// a3Serve starts certbus serve and waits until its start-up catch-up has
// scanned the (still empty) letsencrypt dir, so that the test's own events
// are the only ones.
func a3Serve(t *testing.T, e *env) *daemonProc {
	t.Helper()
	d := startDaemon(t, e.bus.Address, e.config)
	testutil.WaitFor(t, 10*time.Second, func() bool { return strings.Contains(d.log.String(), "catch-up scan") }, "the start-up catch-up scan")
	return d
}

// a3Renew runs one certbot-like renewal through the real hooks: pre,
// deploy of the lineage, post --wait. It returns post's output and exit
// code; pre and deploy must succeed.
func a3Renew(t *testing.T, e *env, live string, names ...string) (string, int) {
	t.Helper()
	if out, code := hookRun(t, e, []string{"pre"}); code != 0 {
		t.Fatalf("hook pre: exit %d\n%s", code, out)
	}
	if out, code := hookRun(t, e, []string{"deploy"}, deployEnv(live, names...)...); code != 0 {
		t.Fatalf("hook deploy: exit %d\n%s", code, out)
	}
	return hookRun(t, e, []string{"post", "--wait", "--timeout", "90s"})
}

// a3Served is the fingerprint of the leaf a TLS endpoint serves now.
func a3Served(target verify.Target) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := verify.Leaf(ctx, target)
	if err != nil {
		return "", err
	}
	return verify.Fingerprint(c), nil
}

func a3WaitServed(t *testing.T, target verify.Target, want, what string) {
	t.Helper()
	var last string
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if last, err = a3Served(target); err == nil && last == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %s serves %s (%v), want %s", what, target, last, err, want)
}

// a3Proc is a daemon a test started; it is stopped by PID at cleanup.
type a3Proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func a3Start(t *testing.T, name string, cmd *exec.Cmd) *a3Proc {
	t.Helper()
	p := &a3Proc{cmd: cmd, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, tailString(string(b), 4000))
		}
	})
	return p
}

// stop sends SIGTERM, then SIGKILL after grace; it reports whether the
// process had to be killed.
func (p *a3Proc) stop(grace time.Duration) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

func (p *a3Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// a3OpenDir makes a test directory and its parent traversable by a
// daemon's own user (t.TempDir makes them 0700).
func a3OpenDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// a3Client makes HTTPS requests without pause and records, per request,
// whether it failed and which leaf the server presented.
type a3Client struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	seq        []string // fingerprints in the order first seen
	current    string
}

func (c *a3Client) run(ctx context.Context, url string, tr *http.Transport) {
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		resp, err := hc.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return // cut short by the end of the test, not by Apache
			}
			c.failed.Add(1)
			c.mu.Lock()
			if len(c.errs) < 10 {
				c.errs = append(c.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			c.mu.Unlock()
			continue
		}
		c.ok.Add(1)
		fp := verify.Fingerprint(resp.TLS.PeerCertificates[0])
		c.mu.Lock()
		if fp != c.current {
			c.current = fp
			c.seq = append(c.seq, fp)
		}
		c.mu.Unlock()
	}
}

func (c *a3Client) saw(fp string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current == fp
}

// TestApacheRotationsWithoutFailedRequests: Debian's apache2 with a
// minimal config of its own serves a lineage; the apache app finds the
// vhost's domains and verify endpoint in that config. Three renewals in a
// row, each through hook pre, deploy and post: after each, Apache serves
// the new certificate, while four clients (two on keep-alive connections,
// two opening a connection per request) request without pause and never
// see a failure. Then a broken config: the renewal fails with Apache's
// message, Apache is not reloaded and keeps serving.
func TestApacheRotationsWithoutFailedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real apache2")
	}
	testutil.Need(t, "apache2")
	apache2, _ := testutil.LookPath("apache2")
	e := newEnv(t, false, "")
	root := a3OpenDir(t)
	docroot := filepath.Join(root, "htdocs")
	os.Mkdir(docroot, 0o755)
	os.WriteFile(filepath.Join(docroot, "index.html"), []byte("hello\n"), 0o644)
	port := testutil.FreePort(t)
	conf := filepath.Join(root, "apache2.conf")
	live := filepath.Join(e.le, "live", "a.test")
	apacheConf := strings.NewReplacer("$ROOT", root, "$PORT", strconv.Itoa(port), "$LIVE", live).Replace(`# A minimal Apache for the test: its own ServerRoot, pid file and port.
DefaultRuntimeDir $ROOT
PidFile $ROOT/apache2.pid
ErrorLog $ROOT/error.log
LogLevel info
Mutex file:$ROOT
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
User www-data
Group www-data
ServerName localhost
KeepAlive On
Listen 127.0.0.1:$PORT https
<VirtualHost 127.0.0.1:$PORT>
	ServerName a.test
	ServerAlias www.a.test
	DocumentRoot $ROOT/htdocs
	SSLEngine on
	SSLCertificateFile $LIVE/fullchain.pem
	SSLCertificateKeyFile $LIVE/privkey.pem
</VirtualHost>
`)
	os.WriteFile(conf, []byte(apacheConf), 0o644)
	args := []string{apache2, "-d", root, "-f", conf}
	a3Config(t, e, fmt.Sprintf(`apps:
  - name: web
    type: apache
    reload: {command: [%s, -k, graceful]}
    options:
      config_root: %s
      configtest: [%s, -t]
`, strings.Join(args, ", "), root, strings.Join(args, ", ")))
	a3Serve(t, e)

	leafs := []*testcerts.Leaf{testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})}
	testcerts.MustLineage(t, e.le, "a.test", 1, leafs[0])
	apache := a3Start(t, "apache2", exec.Command(apache2, "-d", root, "-f", conf, "-DFOREGROUND"))
	target := verify.Target{Address: fmt.Sprintf("127.0.0.1:%d", port), ServerName: "a.test"}
	a3WaitServed(t, target, leafs[0].Fingerprint, "apache at start")

	pool := x509.NewCertPool()
	pool.AddCert(testcerts.Shared().Cert)
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, target.Address)
	}
	url := fmt.Sprintf("https://a.test:%d/index.html", port)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	clients := make([]*a3Client, 4)
	for i := range clients {
		clients[i] = &a3Client{}
		tr := &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: i%2 == 1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			clients[i].run(ctx, url, tr)
		}()
	}
	stopClients := func() {
		stop()
		wg.Wait()
	}
	defer stopClients()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		for _, c := range clients {
			if c.ok.Load() <= 10 {
				return false
			}
		}
		return true
	}, "every client's first requests")

	for n := 2; n <= 4; n++ {
		l := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
		leafs = append(leafs, l)
		testcerts.MustLineage(t, e.le, "a.test", n, l)
		start := time.Now()
		out, code := a3Renew(t, e, live, "a.test", "www.a.test")
		if code != 0 || !strings.Contains(out, "web: ok: reloaded (command "+apache2) {
			t.Fatalf("rotation %d: post --wait exit %d\n%s", n-1, code, out)
		}
		t.Logf("rotation %d: post answered ok after %s", n-1, time.Since(start).Round(time.Millisecond))
		// certbus verified it already; check it independently, under both names.
		for _, name := range []string{"a.test", "www.a.test"} {
			if fp, err := a3Served(verify.Target{Address: target.Address, ServerName: name}); err != nil || fp != l.Fingerprint {
				t.Fatalf("rotation %d: %s served %s %v, want %s", n-1, name, fp, err, l.Fingerprint)
			}
		}
		testutil.WaitFor(t, 15*time.Second, func() bool {
			for _, c := range clients {
				if !c.saw(l.Fingerprint) {
					return false
				}
			}
			return true
		}, fmt.Sprintf("every client on the certificate of rotation %d", n-1))
	}

	// A broken config: the config test fails, Apache is not told, and
	// keeps serving the last certificate.
	os.WriteFile(conf, []byte(apacheConf+"ThisIsNotADirective on\n"), 0o644)
	bad := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	testcerts.MustLineage(t, e.le, "a.test", 5, bad)
	out, code := a3Renew(t, e, live, "a.test", "www.a.test")
	if code != 4 || !strings.Contains(out, "web: failed") || !strings.Contains(out, "Invalid command 'ThisIsNotADirective'") ||
		!strings.Contains(out, "not reloaded") {
		t.Errorf("renewal with a broken Apache config: exit %d, want 4 with Apache's message\n%s", code, out)
	}
	time.Sleep(500 * time.Millisecond)
	if fp, err := a3Served(target); err != nil || fp != leafs[3].Fingerprint {
		t.Errorf("after the refused reload Apache serves %s %v, want the previous %s", fp, err, leafs[3].Fingerprint)
	}
	if apache.exited() {
		t.Error("Apache died after the broken config")
	}
	time.Sleep(300 * time.Millisecond)
	stopClients()

	var total, failed int64
	for i, c := range clients {
		total += c.ok.Load() + c.failed.Load()
		failed += c.failed.Load()
		if len(c.errs) > 0 {
			t.Errorf("client %d (keep-alive %v): %d failed requests, first: %s", i, i%2 == 0, c.failed.Load(), strings.Join(c.errs, "; "))
		}
		// Each client saw the certificates in order, never an old one
		// after a new one.
		want := []string{}
		for _, l := range leafs {
			want = append(want, l.Fingerprint)
		}
		if strings.Join(c.seq, " ") != strings.Join(want, " ") {
			t.Errorf("client %d saw certificates in the order %q, want %q", i, short(c.seq), short(want))
		}
	}
	t.Logf("requests during three rotations and a refused one: %d made, %d failed", total, failed)
	if total < 100 {
		t.Errorf("only %d requests made: the clients did not keep Apache busy", total)
	}
}

func short(fps []string) []string {
	out := make([]string, len(fps))
	for i, f := range fps {
		out[i] = f[:12]
	}
	return out
}

// a3Ejabberd is a Debian ejabberd 23.01 started for a test with its own
// config, spool, log dir, Erlang node name and cookie, and a distribution
// port of its own instead of epmd (ERL_DIST_PORT, which Debian's
// ejabberdctl honours), so it never meets the host's ejabberd.
type a3Ejabberd struct {
	yml, ctlCfg string
	addr        string
	proc        *a3Proc
}

// ejabberdctl is the argv prefix that reaches this node.
func (j *a3Ejabberd) ejabberdctl() []string {
	return []string{"/usr/sbin/ejabberdctl", "--ctl-config", j.ctlCfg}
}

func a3StartEjabberd(t *testing.T, certfile string, hosts ...string) *a3Ejabberd {
	t.Helper()
	dir := a3OpenDir(t)
	u, err := user.Lookup("ejabberd")
	if err != nil {
		t.Fatalf("ejabberd user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	spool, logs := filepath.Join(dir, "spool"), filepath.Join(dir, "logs")
	for _, d := range []string{spool, logs} {
		os.Mkdir(d, 0o750)
		os.Chown(d, uid, gid)
	}
	port := testutil.FreePort(t)
	j := &a3Ejabberd{yml: filepath.Join(dir, "ejabberd.yml"), ctlCfg: filepath.Join(dir, "ejabberdctl.cfg"), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	yml := fmt.Sprintf(`# ejabberd for a certbus test: loopback only.
hosts: [%s]
loglevel: info
certfiles:
  - %q
listen:
  -
    port: %d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
modules:
  mod_disco: {}
`, strings.Join(hosts, ", "), certfile, port)
	os.WriteFile(j.yml, []byte(yml), 0o644)
	cookie := make([]byte, 12)
	rand.Read(cookie)
	ctl := fmt.Sprintf(`ERLANG_NODE=certbus%d@localhost
ERL_DIST_PORT=%d
SPOOL_DIR=%s
LOGS_DIR=%s
EJABBERD_CONFIG_PATH=%s
EJABBERD_PID_PATH=%s
ERL_OPTIONS="-setcookie %s"
EJABBERD_BYPASS_WARNINGS=true
`, port, testutil.FreePort(t), spool, logs, j.yml, filepath.Join(spool, "ejabberd.pid"), hex.EncodeToString(cookie))
	os.WriteFile(j.ctlCfg, []byte(ctl), 0o644)
	// ejabberdctl runs the node through su as the ejabberd user, so the
	// process started here is a shell; the node's own pid is in the pid
	// file. Cleanup asks the node to stop, then kills that pid if needed.
	j.proc = a3Start(t, "ejabberd", exec.Command(j.ejabberdctl()[0], append(j.ejabberdctl()[1:], "foreground")...))
	t.Cleanup(func() {
		if j.proc.exited() {
			return
		}
		stop := exec.Command(j.ejabberdctl()[0], append(j.ejabberdctl()[1:], "stop")...)
		if out, err := stop.CombinedOutput(); err != nil {
			t.Logf("ejabberdctl stop: %v\n%s", err, out)
		}
		select {
		case <-j.proc.done:
		case <-time.After(20 * time.Second):
			if b, err := os.ReadFile(filepath.Join(spool, "ejabberd.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					t.Logf("ejabberd node (pid %d) did not stop; killing it", pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	return j
}

// TestEjabberdRenewal: Debian's ejabberd 23.01 on loopback, hosting
// xmpp.test (and not www.xmpp.test). The ejabberd app reads hosts: and the
// c2s listener from ejabberd.yml, installs key + chain for xmpp.test only,
// and after the renewal STARTTLS on the c2s port presents the new
// certificate.
//
// First through the real chain: ejabberdctl reload_config, or the fallback
// if reload_config keeps the old certificate (ejabberd#4007). Then with the
// gentle step replaced by a no-op, which is what #4007 looks like from
// outside: verification sees the old leaf, and the fallback (ejabberdctl
// restart here, try-restart of ejabberd.service on a real host) brings the
// new one.
func TestEjabberdRenewal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real ejabberd")
	}
	testutil.NeedRoot(t)
	testutil.Need(t, "ejabberdctl")
	dest := installtest.Dir(t)
	pem := filepath.Join(dest, "letsencrypt", "xmpp.test", "ejabberd.pem")
	u, _ := user.Lookup("ejabberd")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	first := testcerts.MustIssue(t, []string{"xmpp.test", "www.xmpp.test"}, testcerts.Options{})
	os.MkdirAll(filepath.Dir(pem), 0o755)
	os.WriteFile(pem, append(append([]byte{}, first.KeyPEM...), first.FullchainPEM()...), 0o600)
	os.Chown(pem, uid, gid)
	j := a3StartEjabberd(t, pem, "xmpp.test", "conference.test")
	target := verify.Target{Address: j.addr, ServerName: "xmpp.test", StartTLS: "xmpp"}
	a3WaitServed(t, target, first.Fingerprint, "ejabberd at start")

	appYAML := func(gentle []string) string {
		return fmt.Sprintf(`apps:
  - name: xmpp
    type: ejabberd
    copy: {certificate: "%[1]s/letsencrypt/{domain}/ejabberd.pem", private_key: "%[1]s/letsencrypt/{domain}/ejabberd.pem"}
    reload: {command: [%[2]s, restart]}
    options:
      config: %[3]s
      ejabberdctl: [%[4]s]
`, dest, strings.Join(j.ejabberdctl(), ", "), j.yml, strings.Join(gentle, ", "))
	}
	renew := func(t *testing.T, gentle []string) (string, *testcerts.Leaf) {
		e := newEnv(t, false, "")
		a3Config(t, e, appYAML(gentle))
		a3Serve(t, e)
		l := testcerts.MustIssue(t, []string{"xmpp.test", "www.xmpp.test"}, testcerts.Options{})
		live := testcerts.MustLineage(t, e.le, "xmpp.test", 1, l)
		out, code := a3Renew(t, e, live, "xmpp.test", "www.xmpp.test")
		if code != 0 || !strings.Contains(out, "xmpp: ok: reloaded") {
			t.Fatalf("post --wait: exit %d\n%s", code, out)
		}
		fp, err := a3Served(target)
		if err != nil || fp != l.Fingerprint {
			t.Fatalf("ejabberd serves %s %v after the renewal, want %s", fp, err, l.Fingerprint)
		}
		b, _ := os.ReadFile(pem)
		if !bytes.Equal(b, append(append([]byte{}, l.KeyPEM...), l.FullchainPEM()...)) {
			t.Errorf("%s is not the key followed by the full chain", pem)
		}
		st, _ := os.Stat(pem)
		if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != uid || int(sys.Gid) != gid || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d mode %v, want ejabberd:ejabberd 0600", pem, sys.Uid, sys.Gid, st.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(dest, "letsencrypt", "www.xmpp.test")); !os.IsNotExist(err) {
			t.Errorf("a certificate was installed for www.xmpp.test, which ejabberd does not host")
		}
		return out, l
	}
	t.Run("reload_config", func(t *testing.T) {
		out, _ := renew(t, j.ejabberdctl())
		method := "ejabberdctl reload_config"
		if !strings.Contains(out, "reloaded ("+method+")") {
			method = "the restart fallback (reload_config kept the old certificate, ejabberd#4007)"
		}
		t.Logf("ejabberd 23.01 took the new certificate through %s", method)
	})
	t.Run("fallback", func(t *testing.T) {
		start := time.Now()
		out, _ := renew(t, []string{"/bin/true"})
		if !strings.Contains(out, "reloaded (command /usr/sbin/ejabberdctl") || !strings.Contains(out, "restart)") {
			t.Errorf("the fallback did not bring the certificate:\n%s", out)
		}
		t.Logf("fallback after the gentle step's verification ran out: %s", time.Since(start).Round(time.Millisecond))
	})
}

// synapseStandIn is testdata/apps3/synapse_standin.py: Matrix Synapse is
// not in Debian bookworm, so the matrix-synapse app is tested against a
// small stand-in that serves TLS with homeserver.tls.crt and
// homeserver.tls.key and reloads them on SIGHUP, as Synapse does.
const synapseStandIn = "testdata/apps3/synapse_standin.py"

func a3WriteOld(t *testing.T, dir string, l *testcerts.Leaf, uid, gid int, keyMode os.FileMode) (crt, key string) {
	t.Helper()
	crt, key = filepath.Join(dir, "homeserver.tls.crt"), filepath.Join(dir, "homeserver.tls.key")
	os.WriteFile(crt, l.FullchainPEM(), 0o644)
	os.WriteFile(key, l.KeyPEM, keyMode)
	os.Chmod(key, keyMode)
	for _, f := range []string{crt, key} {
		os.Chown(f, uid, gid)
	}
	return crt, key
}

func a3SynapseConfig(t *testing.T, dir, serverName string, port int) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(fmt.Sprintf(`pid_file: "/run/matrix-synapse.pid"
listeners:
  - port: %d
    tls: true
    type: http
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [federation]
tls_certificate_path: "%[2]s/homeserver.tls.crt"
tls_private_key_path: "%[2]s/homeserver.tls.key"
`, port, dir)), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "server_name.yaml"), []byte("server_name: "+serverName+"\n"), 0o644)
}

// TestMatrixSynapseStandIn: the matrix-synapse app finds server_name in
// conf.d, installs the chain and key where Synapse reads them (owner
// nobody here: there is no matrix-synapse user without the package; the
// config loader wants the paths alongside an owner), reloads by SIGHUP,
// and the stand-in serves the new leaf.
func TestMatrixSynapseStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: synapse stand-in")
	}
	testutil.Need(t, "python3=python3")
	e := newEnv(t, false, "")
	dir := installtest.Dir(t)
	port := testutil.FreePort(t)
	a3SynapseConfig(t, dir, "matrix.test", port)
	old := testcerts.MustIssue(t, []string{"matrix.test"}, testcerts.Options{})
	crt, key := a3WriteOld(t, dir, old, 0, 0, 0o600)
	python, _ := testutil.LookPath("python3")
	standIn := a3Start(t, "synapse-standin", exec.Command(python, synapseStandIn, crt, key, strconv.Itoa(port)))
	target := verify.Target{Address: fmt.Sprintf("127.0.0.1:%d", port), ServerName: "matrix.test"}
	a3WaitServed(t, target, old.Fingerprint, "stand-in at start")
	a3Config(t, e, fmt.Sprintf(`apps:
  - name: matrix
    type: matrix-synapse
    copy: {certificate: %[2]s/homeserver.tls.crt, private_key: %[2]s/homeserver.tls.key, owner: nobody}
    reload: {command: [/bin/kill, -HUP, "%[1]d"]}
    options: {config_dir: %[2]s}
`, standIn.cmd.Process.Pid, dir))
	a3Serve(t, e)
	l := testcerts.MustIssue(t, []string{"matrix.test", "www.matrix.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "matrix.test", 1, l)
	out, code := a3Renew(t, e, live, "matrix.test", "www.matrix.test")
	if code != 0 || !strings.Contains(out, "matrix: ok: reloaded (command /bin/kill -HUP") {
		t.Fatalf("post --wait: exit %d\n%s", code, out)
	}
	if fp, err := a3Served(target); err != nil || fp != l.Fingerprint {
		t.Fatalf("stand-in serves %s %v, want %s", fp, err, l.Fingerprint)
	}
	nobody, _ := user.Lookup("nobody")
	nogroup, _ := user.LookupGroup("nogroup")
	for f, want := range map[string]struct {
		data []byte
		mode os.FileMode
	}{crt: {l.FullchainPEM(), 0o644}, key: {l.KeyPEM, 0o600}} {
		b, _ := os.ReadFile(f)
		st, _ := os.Stat(f)
		sys := st.Sys().(*syscall.Stat_t)
		if !bytes.Equal(b, want.data) || st.Mode().Perm() != want.mode || strconv.Itoa(int(sys.Uid)) != nobody.Uid || strconv.Itoa(int(sys.Gid)) != nogroup.Gid {
			t.Errorf("%s: mode %v owner %d:%d, content ok %v", f, st.Mode().Perm(), sys.Uid, sys.Gid, bytes.Equal(b, want.data))
		}
	}
}

// TestRollbackWhenDaemonNeverReloads: `openssl s_server` holds the old pair
// and never reloads. Verification never sees the new leaf, so the app
// restores the previous files byte for byte (owner and mode too), reloads
// again, and `hook post --wait` exits 4 naming the app.
func TestRollbackWhenDaemonNeverReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: openssl s_server")
	}
	testutil.Need(t, "openssl")
	e := newEnv(t, false, "")
	dir := installtest.Dir(t)
	port := testutil.FreePort(t)
	a3SynapseConfig(t, dir, "stuck.test", port)
	old := testcerts.MustIssue(t, []string{"stuck.test"}, testcerts.Options{})
	crt, key := a3WriteOld(t, dir, old, 0, testutil.Nobody, 0o640)
	openssl, _ := testutil.LookPath("openssl")
	a3Start(t, "openssl-s_server", exec.Command(openssl, "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port),
		"-cert", crt, "-key", key, "-www", "-quiet"))
	target := verify.Target{Address: fmt.Sprintf("127.0.0.1:%d", port), ServerName: "stuck.test"}
	a3WaitServed(t, target, old.Fingerprint, "s_server at start")
	before := dirState(t, dir)
	statOf := func(f string) string {
		st, _ := os.Stat(f)
		sys := st.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("%v %d:%d", st.Mode().Perm(), sys.Uid, sys.Gid)
	}
	metaBefore := statOf(crt) + " " + statOf(key)
	a3Config(t, e, fmt.Sprintf(`apps:
  - name: stuck
    type: matrix-synapse
    copy: {certificate: %[1]s/homeserver.tls.crt, private_key: %[1]s/homeserver.tls.key, owner: nobody}
    reload: {command: [/bin/true], timeout: 3s}
    options: {config_dir: %[1]s}
`, dir))
	a3Serve(t, e)
	l := testcerts.MustIssue(t, []string{"stuck.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, e.le, "stuck.test", 1, l)
	out, code := a3Renew(t, e, live, "stuck.test")
	if code != 4 || !strings.Contains(out, "stuck: failed") || !strings.Contains(out, "previous files restored and reloaded") ||
		!strings.Contains(out, old.Fingerprint) {
		t.Errorf("post --wait: exit %d, want 4 naming the app, the old leaf served and the restore\n%s", code, out)
	}
	if after := dirState(t, dir); after != before {
		t.Errorf("files not restored byte for byte:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if metaAfter := statOf(crt) + " " + statOf(key); metaAfter != metaBefore {
		t.Errorf("owner/mode not restored: %s, was %s", metaAfter, metaBefore)
	}
	if fp, err := a3Served(target); err != nil || fp != old.Fingerprint {
		t.Errorf("s_server serves %s %v, want the old %s", fp, err, old.Fingerprint)
	}
}
