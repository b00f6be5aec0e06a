package certreload_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/certreload"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
	"github.com/certbus/certbus/internal/verify"
)

// server is a TLS listener serving src, for handshakes that show what a
// client really gets.
func server(t *testing.T, src *certreload.Source) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: src.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
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
	return ln.Addr().String()
}

func served(t *testing.T, addr string) string {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return verify.Fingerprint(c.ConnectionState().PeerCertificates[0])
}

// reloads records OnReload calls.
type reloads struct {
	mu   sync.Mutex
	errs []error
}

func (r *reloads) record(_ *x509.Certificate, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *reloads) count() (n int, last error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return 0, nil
	}
	return len(r.errs), r.errs[len(r.errs)-1]
}

func TestNewRefusesBadPairs(t *testing.T) {
	dir := t.TempDir()
	a := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	b := testcerts.MustIssue(t, []string{"b.test"}, testcerts.Options{})
	old := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o600)
		return p
	}
	for _, tc := range []struct {
		name       string
		cert, key  string
		wantDomain string
	}{
		{name: "mismatch", cert: write("a.crt", a.FullchainPEM()), key: write("b.key", b.KeyPEM)},
		{name: "expired", cert: write("old.crt", old.FullchainPEM()), key: write("old.key", old.KeyPEM)},
		{name: "missing key", cert: write("a2.crt", a.FullchainPEM()), key: filepath.Join(dir, "nope")},
		{name: "junk", cert: write("junk.crt", []byte("junk")), key: write("a.key", a.KeyPEM)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := certreload.New(certreload.Options{CertFile: tc.cert, KeyFile: tc.key}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// One combined file works.
	src, err := certreload.New(certreload.Options{CertFile: write("both.pem", append(append([]byte{}, a.KeyPEM...), a.FullchainPEM()...)), KeyFile: filepath.Join(dir, "both.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if got := verify.Fingerprint(src.Leaf()); got != a.Fingerprint {
		t.Errorf("leaf %s, want %s", got, a.Fingerprint)
	}
}

// TestReloadsOnCertificateEvent runs a real certbus serve on a private bus
// and renews through the real hook binary: the Source follows the lineage,
// ignores other lineages, keeps its pair when the new one does not match,
// and reloads on SIGHUP.
func TestReloadsOnCertificateEvent(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.Need(t, "dbus-daemon")
	dir := t.TempDir()
	b := testutil.StartBus(t, testutil.BusOptions{Policy: filepath.Join(testutil.RepoRoot(t), testutil.ShippedPolicy)})
	le := filepath.Join(dir, "le")
	conf := filepath.Join(dir, "certbus.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps_dir: %s\napps: []\n", le, filepath.Join(dir, "state"), filepath.Join(dir, "apps.d"))), 0o644)
	v1 := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	live := testcerts.MustLineage(t, le, "a.test", 1, v1)

	bin := filepath.Join(dir, "certbus")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/certbus").CombinedOutput(); err != nil {
		t.Fatalf("build certbus: %v\n%s", err, out)
	}
	daemon := exec.Command(bin, "serve", "--bus", b.Address, "--config", conf)
	logf, _ := os.Create(filepath.Join(dir, "daemon.log"))
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s", log)
		}
	})
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		var has bool
		conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, bus.Name).Store(&has)
		return has
	}, "certbus serve to own its name")
	hook := func(lineage, domains string) {
		t.Helper()
		cmd := exec.Command(bin, "hook", "deploy")
		cmd.Env = append(os.Environ(), "CERTBUS_BUS="+b.Address, "CERTBUS_CONFIG="+conf, "RENEWED_LINEAGE="+lineage, "RENEWED_DOMAINS="+domains)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hook deploy: %v\n%s", err, out)
		}
	}

	t.Run("lineage", func(t *testing.T) {
		var got reloads
		src, err := certreload.New(certreload.Options{CertFile: filepath.Join(live, "fullchain.pem"), KeyFile: filepath.Join(live, "privkey.pem"), OnReload: got.record})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Watch(conn); err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		addr := server(t, src)
		if fp := served(t, addr); fp != v1.Fingerprint {
			t.Fatalf("served %s, want v1", fp)
		}
		// Another lineage's renewal is not ours.
		other := testcerts.MustLineage(t, le, "b.test", 1, testcerts.MustIssue(t, []string{"b.test"}, testcerts.Options{}))
		hook(other, "b.test")
		v2 := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
		testcerts.MustLineage(t, le, "a.test", 2, v2)
		hook(live, "a.test www.a.test")
		testutil.WaitFor(t, 10*time.Second, func() bool { return served(t, addr) == v2.Fingerprint }, "the renewed certificate to be served")
		if n, err := got.count(); n != 1 || err != nil {
			t.Errorf("%d reloads (last error %v), want 1 (b.test is not ours)", n, err)
		}
	})

	t.Run("mismatch kept out, then SIGHUP", func(t *testing.T) {
		// The server reads copies of its own; the test breaks them.
		own := t.TempDir()
		certFile, keyFile := filepath.Join(own, "cert.pem"), filepath.Join(own, "key.pem")
		cur := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
		os.WriteFile(certFile, cur.FullchainPEM(), 0o644)
		os.WriteFile(keyFile, cur.KeyPEM, 0o600)
		var got reloads
		src, err := certreload.New(certreload.Options{CertFile: certFile, KeyFile: keyFile, Domains: []string{"A.test"}, SIGHUP: true, Settle: 300 * time.Millisecond, OnReload: got.record})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Watch(conn); err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		addr := server(t, src)
		next := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
		os.WriteFile(certFile, next.FullchainPEM(), 0o644) // the key stays the old one
		v3 := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
		testcerts.MustLineage(t, le, "a.test", 3, v3)
		hook(live, "a.test www.a.test")
		testutil.WaitFor(t, 10*time.Second, func() bool { n, _ := got.count(); return n == 1 }, "the reload attempt")
		if _, err := got.count(); err == nil {
			t.Fatal("a mismatched pair was loaded")
		}
		if fp := served(t, addr); fp != cur.Fingerprint {
			t.Fatalf("served %s after a failed reload, want the old pair %s", fp, cur.Fingerprint)
		}
		os.WriteFile(keyFile, next.KeyPEM, 0o600)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		testutil.WaitFor(t, 10*time.Second, func() bool { return served(t, addr) == next.Fingerprint }, "the pair reloaded on SIGHUP")
		if n, err := got.count(); n != 2 || err != nil {
			t.Errorf("%d reloads, last error %v; want 2, nil", n, err)
		}
	})
}
