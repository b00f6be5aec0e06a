package verify

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/certbus/certbus/internal/testutil"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool skips the test when a program is missing, or fails it when CI is
// set: CI must never pass by skipping.
func needTool(t *testing.T, path, install string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (%s)", path, install)
		}
		t.Skipf("%s is not installed (%s)", path, install)
	}
}

// testCert is a self-signed certificate and key, in memory and as PEM files.
type testCert struct {
	tls      tls.Certificate
	leaf     *x509.Certificate
	certFile string
	keyFile  string
}

var notAfter = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func newCert(t *testing.T, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := testCert{
		tls:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		leaf:     leaf,
		certFile: filepath.Join(dir, name+".crt"),
		keyFile:  filepath.Join(dir, name+".key"),
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(c.certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls Leaf until the target answers with a certificate.
func waitFor(t *testing.T, target Target) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cert, err := Leaf(ctx, target)
		cancel()
		if err == nil {
			return cert
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served a certificate: %v", target, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startOpenSSL runs "openssl s_server" on addr serving def, and alt to
// clients whose SNI is altName. It is killed by its PID when the test ends,
// or earlier by calling the returned function.
func startOpenSSL(t *testing.T, addr string, def testCert, altName string, alt testCert) (stop func()) {
	t.Helper()
	needTool(t, "openssl", "apt-get install openssl")
	args := []string{"s_server", "-quiet", "-www", "-accept", addr, "-cert", def.certFile, "-key", def.keyFile}
	if altName != "" {
		args = append(args, "-servername", altName, "-cert2", alt.certFile, "-key2", alt.keyFile)
	}
	cmd := exec.Command("openssl", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_server: %v", err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("openssl s_server stderr:\n%s", stderr.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestLeafOpenSSL checks implicit TLS against openssl s_server, including
// that the SNI sent selects the certificate.
func TestLeafOpenSSL(t *testing.T) {
	a, b := newCert(t, "a.example"), newCert(t, "b.example")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startOpenSSL(t, addr, a, "b.example", b)
	waitFor(t, Target{Address: addr})

	for _, tt := range []struct {
		serverName string
		want       testCert
	}{
		{"a.example", a},
		{"b.example", b},
		{"", a},
	} {
		t.Run("sni "+tt.serverName, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Leaf(ctx, Target{Address: addr, ServerName: tt.serverName})
			if err != nil {
				t.Fatal(err)
			}
			if Fingerprint(got) != Fingerprint(tt.want.leaf) {
				t.Errorf("served %s, want %s", got.Subject, tt.want.leaf.Subject)
			}
		})
	}
}

// protoServer serves one plaintext protocol on a loopback listener and then
// TLS with cert, recording the SNI of each handshake.
//
// It is a stand-in for real mail and XMPP daemons: openssl s_server has no
// -starttls option (only s_client has), and no SMTP, IMAP or XMPP server is
// installed on the test machines, so these small servers speak the STARTTLS
// exchange of each protocol as its RFC describes, on a real socket. The
// PostgreSQL case runs the real server, and the apps tests verify a real
// ejabberd over XMPP.
type protoServer struct {
	addr string
	sni  chan string
}

// plaintext speaks the protocol on conn until TLS should start, and says
// whether it should.
type plaintext func(conn net.Conn, r *bufio.Reader) bool

func serveProto(t *testing.T, cert testCert, speak plaintext) *protoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &protoServer{addr: ln.Addr().String(), sni: make(chan string, 16)}
	cfg := &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		select {
		case s.sni <- hello.ServerName:
		default:
		}
		return &cert.tls, nil
	}}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(conn)
				if !speak(conn, r) {
					return
				}
				_ = tls.Server(conn, cfg).Handshake()
			}()
		}
	}()
	return s
}

func readLine(r *bufio.Reader) string {
	line, _ := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

// smtpServer answers like Postfix; offer and answer can break it.
func smtpServer(offer bool, answer string) plaintext {
	return func(conn net.Conn, r *bufio.Reader) bool {
		fmt.Fprint(conn, "220-mail.example ESMTP\r\n220 mail.example ready\r\n")
		if ehlo := readLine(r); !strings.HasPrefix(ehlo, "EHLO [127.0.0.1]") {
			fmt.Fprintf(conn, "501 bad %q\r\n", ehlo)
			return false
		}
		fmt.Fprint(conn, "250-mail.example\r\n250-PIPELINING\r\n")
		if offer {
			fmt.Fprint(conn, "250-STARTTLS\r\n")
		}
		fmt.Fprint(conn, "250 8BITMIME\r\n")
		if readLine(r) != "STARTTLS" {
			return false
		}
		fmt.Fprint(conn, answer)
		return strings.HasPrefix(answer, "220 ")
	}
}

// imapServer answers like Dovecot.
func imapServer(greeting, answer string) plaintext {
	return func(conn net.Conn, r *bufio.Reader) bool {
		fmt.Fprint(conn, greeting)
		if readLine(r) != "a STARTTLS" {
			return false
		}
		fmt.Fprint(conn, answer)
		return strings.HasPrefix(answer, "a OK") || strings.Contains(answer, "\na OK")
	}
}

// xmppServer answers like ejabberd for the domain it serves.
func xmppServer(domain string, offer bool) plaintext {
	return func(conn net.Conn, r *bufio.Reader) bool {
		header, err := r.ReadString('>') // <?xml ...?>
		if err == nil && strings.HasPrefix(header, "<?xml") {
			header, err = r.ReadString('>')
		}
		if err != nil {
			return false
		}
		fmt.Fprint(conn, "<?xml version='1.0'?><stream:stream id='1' version='1.0' xml:lang='en' "+
			"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='"+domain+"'>")
		if !strings.Contains(header, "to='"+domain+"'") {
			fmt.Fprint(conn, "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"+
				"</stream:error></stream:stream>")
			return false
		}
		fmt.Fprint(conn, "<stream:features>")
		if offer {
			fmt.Fprint(conn, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
		}
		fmt.Fprint(conn, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"+
			"</mechanisms></stream:features>")
		if !offer {
			return false
		}
		if got, _ := r.ReadString('>'); !strings.HasPrefix(got, "<starttls") {
			return false
		}
		fmt.Fprint(conn, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		return true
	}
}

// postgresAnswer answers an SSLRequest with one byte, as a server with
// ssl = off does with 'N'.
func postgresAnswer(answer byte) plaintext {
	return func(conn net.Conn, r *bufio.Reader) bool {
		var req [8]byte
		if _, err := io.ReadFull(r, req[:]); err != nil {
			return false
		}
		_, _ = conn.Write([]byte{answer})
		return answer == 'S'
	}
}

func TestLeafStartTLS(t *testing.T) {
	cert := newCert(t, "mail.example")
	for _, tt := range []struct {
		proto string
		speak plaintext
	}{
		{"smtp", smtpServer(true, "220 2.0.0 Ready to start TLS\r\n")},
		{"imap", imapServer("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n",
			"* CAPABILITY IMAP4rev1\r\na OK Begin TLS negotiation now.\r\n")},
		{"xmpp", xmppServer("mail.example", true)},
	} {
		t.Run(tt.proto, func(t *testing.T) {
			s := serveProto(t, cert, tt.speak)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Leaf(ctx, Target{Address: s.addr, ServerName: "mail.example", StartTLS: tt.proto})
			if err != nil {
				t.Fatal(err)
			}
			if Fingerprint(got) != Fingerprint(cert.leaf) {
				t.Errorf("served %s, want %s", got.Subject, cert.leaf.Subject)
			}
			if sni := <-s.sni; sni != "mail.example" {
				t.Errorf("SNI %q, want mail.example", sni)
			}
		})
	}
}

func TestLeafStartTLSRefused(t *testing.T) {
	cert := newCert(t, "mail.example")
	for _, tt := range []struct {
		name, proto string
		speak       plaintext
		message     string
	}{
		{"smtp without STARTTLS", "smtp", smtpServer(false, ""), "does not offer STARTTLS"},
		{"smtp STARTTLS refused", "smtp", smtpServer(true, "454 4.7.0 TLS not available\r\n"), "454"},
		{"smtp data before tls", "smtp", smtpServer(true, "220 go ahead\r\n\x16\x03\x01"), "sent data before the tls handshake"},
		{"imap BYE greeting", "imap", imapServer("* BYE too busy\r\n", ""), `got "* BYE too busy"`},
		{"imap STARTTLS refused", "imap", imapServer("* OK ready\r\n", "a NO no tls here\r\n"), `answered "a NO no tls here"`},
		{"xmpp unknown domain", "xmpp", xmppServer("other.example", true), "stream error: host-unknown"},
		{"xmpp without starttls", "xmpp", xmppServer("mail.example", false), "does not offer starttls"},
		{"postgres ssl off", "postgres", postgresAnswer('N'), "does not accept SSL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := serveProto(t, cert, tt.speak)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Leaf(ctx, Target{Address: s.addr, ServerName: "mail.example", StartTLS: tt.proto})
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want an error containing %q", err, tt.message)
			}
			if !strings.Contains(err.Error(), tt.proto+" starttls") {
				t.Errorf("error %q does not name the protocol", err)
			}
		})
	}
}

// TestLeafPostgres runs a real PostgreSQL server with ssl = on and checks
// the SSLRequest path against it.
func TestLeafPostgres(t *testing.T) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		needTool(t, "/usr/lib/postgresql/VERSION/bin/postgres", "apt-get install postgresql")
	}
	testutil.NeedRoot(t) // to run postgres as another user
	bin := filepath.Dir(bins[len(bins)-1])
	cert := newCert(t, "db.example")

	// PostgreSQL refuses to run as root: give it a directory nobody owns.
	const nobody = 65534
	base, err := os.MkdirTemp("", "certbus-verify-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	asNobody := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Dir = base
		return cmd
	}
	if err := os.Chown(base, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	for src, dst := range map[string]string{cert.certFile: "server.crt", cert.keyFile: "server.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(data, dst)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	server := asNobody("postgres", "-D", data, "-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories=", "-c", "ssl=on")
	var log strings.Builder
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		_ = server.Process.Signal(syscall.SIGINT) // fast shutdown
		_ = server.Wait()
		if t.Failed() {
			t.Logf("postgres log:\n%s", log.String())
		}
	})

	target := Target{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), StartTLS: "postgres"}
	got := waitFor(t, target)
	if Fingerprint(got) != Fingerprint(cert.leaf) {
		t.Errorf("served %s, want %s", got.Subject, cert.leaf.Subject)
	}
}

// TestLeafTimeout checks that a server that accepts and then says nothing
// cannot hold Leaf past its context.
func TestLeafTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // hold it open, silent, until the test ends
		}
	}()
	for _, proto := range []string{"", "smtp", "imap", "xmpp", "postgres"} {
		t.Run("starttls "+proto, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := Leaf(ctx, Target{Address: ln.Addr().String(), ServerName: "x.example", StartTLS: proto})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want a deadline error", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Leaf returned after %v", d)
			}
		})
	}
}

// TestExpect has openssl serve the old certificate, then restarts it with
// the new one while Expect waits, as a daemon reload does.
func TestExpect(t *testing.T) {
	old, renewed := newCert(t, "www.example"), newCert(t, "www.example")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	stop := startOpenSSL(t, addr, old, "", testCert{})
	target := Target{Address: addr, ServerName: "www.example"}
	waitFor(t, target)

	result := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		result <- Expect(ctx, target, strings.ToUpper(Fingerprint(renewed.leaf)), 50*time.Millisecond)
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-result:
		t.Fatalf("Expect returned while the old certificate was served: %v", err)
	default:
	}
	stop()
	startOpenSSL(t, addr, renewed, "", testCert{})
	if err := <-result; err != nil {
		t.Fatalf("Expect: %v", err)
	}
}

func TestExpectMismatch(t *testing.T) {
	served, wanted := newCert(t, "a.example"), newCert(t, "a.example")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startOpenSSL(t, addr, served, "", testCert{})
	target := Target{Address: addr, ServerName: "a.example"}
	waitFor(t, target)

	// Long enough for a handshake on a loaded machine: Expect keeps
	// retrying until the deadline, so this is also how long the test takes.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := Expect(ctx, target, Fingerprint(wanted.leaf), 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	for _, want := range []string{
		addr, "server name a.example",
		"served certificate " + Fingerprint(served.leaf),
		`subject "CN=a.example"`, "expires 2031-05-06T07:08:09Z",
		"want certificate " + Fingerprint(wanted.leaf),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestExpectUnreachable(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Expect(ctx, Target{Address: addr}, strings.Repeat("ab", 32), 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	for _, want := range []string{"no certificate served", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		target  Target
		message string // "" for valid
	}{
		{Target{Address: "127.0.0.1:443"}, ""},
		{Target{Address: "[::1]:5432", StartTLS: "postgres"}, ""},
		{Target{Address: "mail.example:25", ServerName: "mail.example", StartTLS: "smtp"}, ""},
		{Target{Address: "127.0.0.1:143", StartTLS: "imap"}, ""},
		{Target{Address: "127.0.0.1:5222", ServerName: "example.org", StartTLS: "xmpp"}, ""},
		{Target{Address: "127.0.0.1:5222", StartTLS: "xmpp"}, "needs a server name"},
		{Target{Address: "127.0.0.1:21", StartTLS: "ftp"}, `unknown starttls protocol "ftp"`},
		{Target{Address: "127.0.0.1"}, "missing port"},
		{Target{Address: ":443"}, "want host:port"},
		{Target{Address: "127.0.0.1:443", ServerName: "a b"}, "white space"},
	} {
		err := tt.target.Validate()
		switch {
		case tt.message == "" && err != nil:
			t.Errorf("%+v: %v", tt.target, err)
		case tt.message != "" && (err == nil || !strings.Contains(err.Error(), tt.message)):
			t.Errorf("%+v: got %v, want an error containing %q", tt.target, err, tt.message)
		}
	}
	if err := Expect(context.Background(), Target{Address: "127.0.0.1:443"}, "nothex", time.Second); err == nil ||
		!strings.Contains(err.Error(), "invalid SHA-256 fingerprint") {
		t.Errorf("Expect with a bad fingerprint: %v", err)
	}
}
