package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Pebble is a running pebble ACME server (Debian's package, 2.4) that
// accepts every challenge without looking (PEBBLE_VA_ALWAYS_VALID), so
// clients need no challenge server and any domain name can be issued.
//
// Pebble 2.4 issues leaf certificates valid for five years (no profiles, no
// way to shorten them), from a root and intermediate it generates afresh at
// every start: a certificate is never "due", so renewals must be forced
// (certbot renew --force-renewal).
type Pebble struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:PORT/dir.
	DirectoryURL string
	// ManagementURL is pebble's management interface
	// (https://127.0.0.1:PORT), e.g. /roots/0 for the issuing root.
	ManagementURL string
	// CABundle is the path of a PEM file holding the CA that signed
	// pebble's own TLS certificate, for REQUESTS_CA_BUNDLE (certbot) or
	// Client. It does not verify the certificates pebble issues.
	CABundle string

	pool *x509.CertPool
	proc *process
}

// pebbleEnv makes pebble fast and deterministic: no validation (and so no
// sleeping before it), no deliberately rejected nonces, and valid
// authorizations always reused, as Let's Encrypt does for 30 days.
var pebbleEnv = []string{
	"PEBBLE_VA_ALWAYS_VALID=1",
	"PEBBLE_VA_NOSLEEP=1",
	"PEBBLE_WFE_NONCEREJECT=0",
	"PEBBLE_AUTHZREUSE=100",
}

// StartPebble starts pebble on free loopback ports with a TLS certificate
// for localhost and 127.0.0.1 made for the test, waits until its directory
// answers, and stops it (by its PID) when the test ends.
func StartPebble(t testing.TB) *Pebble {
	t.Helper()
	Need(t, "pebble")
	dir := t.TempDir()
	p := &Pebble{CABundle: filepath.Join(dir, "ca.pem")}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	p.pool = writeTLSFiles(t, p.CABundle, certFile, keyFile)

	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	manage := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": manage,
		"certificate":             certFile,
		"privateKey":              keyFile,
		// Validation never connects (ALWAYS_VALID); these only have to
		// be ports nobody relies on.
		"httpPort":                       FreePort(t),
		"tlsPort":                        FreePort(t),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	confFile := filepath.Join(dir, "pebble.json")
	b, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(confFile, b, 0o644); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	p.DirectoryURL = "https://" + listen + "/dir"
	p.ManagementURL = "https://" + manage

	cmd := exec.Command("pebble", "-config", confFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), pebbleEnv...)
	p.proc = startProcess(t, "pebble", cmd, filepath.Join(dir, "pebble.log"))

	client := p.Client()
	client.Timeout = time.Second
	WaitFor(t, 10*time.Second, func() bool {
		if exited, err := p.proc.exited(); exited {
			t.Fatalf("pebble exited at start (%v); its log:\n%s", err, tail(p.proc.logPath, 4096))
		}
		resp, err := client.Get(p.DirectoryURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "pebble's directory at "+p.DirectoryURL)
	return p
}

// Client returns an HTTP client that trusts pebble's TLS certificate.
func (p *Pebble) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: p.pool}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Stop stops pebble now. Stopping it again, or at cleanup, does nothing.
func (p *Pebble) Stop(t testing.TB) {
	t.Helper()
	p.proc.stop(t)
}

// writeTLSFiles makes a CA and a server certificate for localhost,
// 127.0.0.1 and ::1 signed by it, writes the CA, the certificate and its key
// as PEM, and returns a pool holding the CA.
func writeTLSFiles(t testing.TB, caFile, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "certbus test CA for pebble"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caFile, "CERTIFICATE", caDER, 0o644},
		{certFile, "CERTIFICATE", leafDER, 0o644},
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
