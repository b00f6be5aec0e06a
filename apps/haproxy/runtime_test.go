package haproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
	"github.com/certbus/certbus/internal/verify"
)

// startHAProxy runs a real HAProxy with one TLS bind over a crt directory
// holding a.test.pem, and returns the reloader for its admin socket and the
// bind's address.
func startHAProxy(t *testing.T) (*RuntimeReloader, string, string) {
	t.Helper()
	testutil.Need(t, "haproxy")
	bin, _ := testutil.LookPath("haproxy")
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	os.MkdirAll(certs, 0o755)
	v1 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	os.WriteFile(filepath.Join(certs, "a.test.pem"), append(append([]byte{}, v1.KeyPEM...), v1.FullchainPEM()...), 0o600)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	sock := filepath.Join(dir, "admin.sock")
	conf := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout client 5s
    timeout server 5s
    timeout connect 2s
frontend fe
    bind %s ssl crt %s/
    http-request return status 200
`, sock, addr, certs)
	os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(conf), 0o644)
	cmd := exec.Command(bin, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	testutil.WaitFor(t, 10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }, "haproxy's admin socket")
	return &RuntimeReloader{Socket: sock, Bufsize: DefaultBufsize, Path: filepath.Join(certs, "{domain}.pem")}, filepath.Join(certs, "a.test.pem"), addr
}

func leafAt(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return verify.Fingerprint(c.ConnectionState().PeerCertificates[0])
}

func TestRuntimeUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemon: not in the -short tier")
	}
	r, file, addr := startHAProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v2 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{Key: testcerts.RSA})
	good := append(append([]byte{}, v2.KeyPEM...), v2.FullchainPEM()...)

	t.Run("key first, blank lines", func(t *testing.T) {
		withBlank := []byte(strings.ReplaceAll(string(good), "-----\n-----BEGIN", "-----\n\n-----BEGIN"))
		if err := r.Update(ctx, file, withBlank); err != nil {
			t.Fatal(err)
		}
		if got := leafAt(t, addr); got != v2.Fingerprint {
			t.Errorf("served %s, want %s", got, v2.Fingerprint)
		}
	})
	t.Run("mismatched pair aborted", func(t *testing.T) {
		other := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
		err := r.Update(ctx, file, append(append([]byte{}, other.KeyPEM...), v2.FullchainPEM()...))
		if err == nil || !strings.Contains(err.Error(), "commit ssl cert") {
			t.Fatalf("err = %v, want a commit failure", err)
		}
		if show, _ := r.command(ctx, "show ssl cert\n"); openTransaction(show) != "" {
			t.Errorf("transaction left open: %q", show)
		}
		if got := leafAt(t, addr); got != v2.Fingerprint {
			t.Errorf("served %s after a refused update, want %s", got, v2.Fingerprint)
		}
	})
	t.Run("not loaded", func(t *testing.T) {
		err := r.Update(ctx, filepath.Join(filepath.Dir(file), "new.test.pem"), good)
		if !errors.Is(err, ErrNotLoaded) {
			t.Fatalf("err = %v, want ErrNotLoaded", err)
		}
	})
	t.Run("over bufsize", func(t *testing.T) {
		small := &RuntimeReloader{Socket: r.Socket, Bufsize: 4096, Path: r.Path}
		if err := small.Update(ctx, file, good); err == nil || !strings.Contains(err.Error(), "tune.bufsize") {
			t.Fatalf("err = %v, want the bufsize refusal", err)
		}
	})
	t.Run("waits for another transaction", func(t *testing.T) {
		// Another party's transaction is open on a.test.pem; an update
		// of another file must wait for it, not join it (HAProxy would put
		// the payload into the open transaction).
		v3 := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
		other := filepath.Join(filepath.Dir(file), "b.test.pem")
		out, err := r.command(ctx, "set ssl cert "+file+" <<\n"+payload(good)+"\n")
		if err != nil || !strings.Contains(out, "Transaction created") {
			t.Fatalf("open a transaction: %v %q", err, out)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		err = r.Update(wctx, other, append(append([]byte{}, v3.KeyPEM...), v3.FullchainPEM()...))
		if err == nil || !strings.Contains(err.Error(), "stayed open") {
			t.Fatalf("err = %v, want a wait for the open transaction", err)
		}
		if show, _ := r.command(ctx, "show ssl cert\n"); openTransaction(show) != file {
			t.Errorf("the other transaction was touched: %q", show)
		}
		r.abort(file)
		// Its own leftover transaction is aborted and replaced.
		r.command(ctx, "set ssl cert "+file+" <<\n"+payload(good)+"\n")
		if err := r.Update(ctx, file, append(append([]byte{}, v3.KeyPEM...), v3.FullchainPEM()...)); err != nil {
			t.Fatal(err)
		}
		if got := leafAt(t, addr); got != v3.Fingerprint {
			t.Errorf("served %s, want %s", got, v3.Fingerprint)
		}
	})
}
