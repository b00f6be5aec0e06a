package certs_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
)

func TestCheckDomain(t *testing.T) {
	for _, tc := range []struct {
		d  string
		ok bool
	}{
		{"example.com", true},
		{"*.example.com", true},
		{"a-b.c0.example", true},
		{"localhost", true},
		{"", false},
		{"-a.com", false},
		{"a-.com", false},
		{"a..com", false},
		{"a.com.", false},
		{"*.*.com", false},
		{"a*.com", false},
		{"ex ample.com", false},
		{"EXAMPLE.com", false}, // callers lower-case first
		{"a_b.com", false},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("abcdefghi.", 26) + "com", false}, // 263 chars
	} {
		err := certs.CheckDomain(tc.d)
		if (err == nil) != tc.ok {
			t.Errorf("CheckDomain(%q) = %v, want ok=%v", tc.d, err, tc.ok)
		}
	}
}

// fixture is a letsencrypt dir with lineages and an outside dir.
type fixture struct {
	le, outside string
	checker     *certs.Checker
	good        string // live dir of example.com + www.example.com
	goodLeaf    *testcerts.Leaf
	other       string // live dir of other.org
	expired     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{le: filepath.Join(root, "le"), outside: filepath.Join(root, "outside")}
	os.MkdirAll(f.outside, 0o755)
	f.goodLeaf = testcerts.MustIssue(t, []string{"example.com", "www.example.com"}, testcerts.Options{})
	f.good = testcerts.MustLineage(t, f.le, "example.com", 1, f.goodLeaf)
	f.other = testcerts.MustLineage(t, f.le, "other.org", 1, testcerts.MustIssue(t, []string{"other.org"}, testcerts.Options{Key: testcerts.RSA}))
	f.expired = testcerts.MustLineage(t, f.le, "old.net", 1, testcerts.MustIssue(t, []string{"old.net"},
		testcerts.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
	f.checker = &certs.Checker{Roots: certs.NewRoots(f.le)}
	return f
}

func TestCheckAccepts(t *testing.T) {
	f := newFixture(t)
	m, err := f.checker.Check(event.Deploy, hooks.LineageDomains(f.good, []string{"example.com", "WWW.example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["www.example.com"] == nil {
		t.Fatalf("domains = %v", m)
	}
	got := m["example.com"]
	if got.Fingerprint != f.goodLeaf.Fingerprint {
		t.Errorf("fingerprint %s, want %s", got.Fingerprint, f.goodLeaf.Fingerprint)
	}
	if string(got.PrivateKey) != string(f.goodLeaf.KeyPEM) || string(got.Fullchain) != string(f.goodLeaf.FullchainPEM()) {
		t.Error("material differs from the lineage's bytes")
	}
	// pre/post with no domains.
	for _, op := range []event.Operation{event.Pre, event.Post} {
		if _, err := f.checker.Check(op, nil); err != nil {
			t.Errorf("%s: %v", op, err)
		}
	}
	// RSA lineage, only cert + key given.
	if _, err := f.checker.Check(event.Deploy, map[string]map[string]string{"other.org": {
		"certificate": filepath.Join(f.other, "cert.pem"), "private_key": filepath.Join(f.other, "privkey.pem")}}); err != nil {
		t.Errorf("rsa lineage: %v", err)
	}
}

func TestCheckRefuses(t *testing.T) {
	f := newFixture(t)
	gc, gk := filepath.Join(f.good, "cert.pem"), filepath.Join(f.good, "privkey.pem")
	// A symlink inside letsencrypt_dir pointing outside it.
	secret := filepath.Join(f.outside, "secret.pem")
	os.WriteFile(secret, f.goodLeaf.CertPEM, 0o600)
	escape := filepath.Join(f.le, "live", "escape.pem")
	os.Symlink(secret, escape)
	outsideCopy := filepath.Join(f.outside, "cert.pem")
	os.WriteFile(outsideCopy, f.goodLeaf.CertPEM, 0o644)
	// Neither a FIFO nor a device node is ever opened for reading: the
	// first would block the daemon, the second may act on open.
	fifo := filepath.Join(f.le, "live", "fifo.pem")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	device := filepath.Join(f.le, "live", "device.pem")
	os.Symlink("/dev/zero", device)
	dir := filepath.Join(f.le, "live")
	// A /proc magic link that leads back inside the roots: through
	// /proc/PID/root it could as well lead into another mount namespace.
	magic := filepath.Join(f.le, "live", "magic.pem")
	os.Symlink("/proc/self/root"+gc, magic)
	big := filepath.Join(f.le, "big.pem")
	os.WriteFile(big, make([]byte, certs.MaxFileSize+1), 0o644)
	notCert := filepath.Join(f.le, "notcert.pem")
	os.WriteFile(notCert, []byte("hello\n"), 0o644)
	many := map[string]map[string]string{}
	for i := 0; i < 101; i++ {
		many[strings.Repeat("a", 1+i%5)+".example"+string(rune('a'+i%26))+string(rune('a'+i/26))] = nil
	}
	pair := func(c, k string) map[string]string { return map[string]string{"certificate": c, "private_key": k} }
	for _, tc := range []struct {
		name    string
		op      event.Operation
		domains map[string]map[string]string
		want    string
	}{
		{"unknown operation", "renew", nil, "unknown operation"},
		{"empty deploy", event.Deploy, nil, "without domains"},
		{"relative path", event.Deploy, map[string]map[string]string{"example.com": pair("live/cert.pem", gk)}, "not absolute"},
		{"outside", event.Deploy, map[string]map[string]string{"example.com": pair(outsideCopy, gk)}, "outside the allowed"},
		{"symlink escaping", event.Deploy, map[string]map[string]string{"example.com": pair(escape, gk)}, "outside the allowed"},
		{"key mismatch", event.Deploy, map[string]map[string]string{"example.com": pair(gc, filepath.Join(f.other, "privkey.pem"))}, "does not match"},
		{"not covered", event.Deploy, map[string]map[string]string{"example.org": pair(gc, gk)}, "not covered"},
		{"invalid name", event.Deploy, map[string]map[string]string{"exa mple.com": pair(gc, gk)}, "not allowed"},
		{"expired", event.Deploy, hooks.LineageDomains(f.expired, []string{"old.net"}), "expired"},
		{"not a certificate", event.Deploy, map[string]map[string]string{"example.com": pair(notCert, gk)}, "not a PEM certificate"},
		{"unknown key", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "pfx": gc}}, "unknown info key"},
		{"missing key", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc}}, "missing private_key"},
		{"fifo", event.Deploy, map[string]map[string]string{"example.com": pair(fifo, gk)}, "fifo.pem is not a regular file"},
		{"device", event.Deploy, map[string]map[string]string{"example.com": pair(device, gk)}, "resolves to /dev/zero, outside the allowed"},
		{"magic link", event.Deploy, map[string]map[string]string{"example.com": pair(magic, gk)}, "magic links are refused"},
		{"too large", event.Deploy, map[string]map[string]string{"example.com": pair(big, gk)}, "big.pem is larger than"},
		{"directory", event.Deploy, map[string]map[string]string{"example.com": pair(dir, gk)}, "live is not a regular file"},
		{"lineage outside", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "lineage": f.outside}}, "lineage: " + f.outside + " resolves to"},
		{"lineage not a directory", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "lineage": gc}}, "not a directory"},
		{"missing file", event.Deploy, map[string]map[string]string{"example.com": pair(filepath.Join(f.le, "nope.pem"), gk)}, "cannot open"},
		{"too many", event.Pre, many, "at most 100"},
		{"files on pre", event.Pre, map[string]map[string]string{"example.com": pair(gc, gk)}, "carries no files"},
		{"duplicate case", event.Deploy, map[string]map[string]string{"example.com": pair(gc, gk), "Example.com": pair(gc, gk)}, "given twice"},
		{"fullchain not PEM", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "fullchain": notCert}}, "fullchain " + notCert + " is not a PEM bundle"},
		{"chain not PEM", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "fullchain": filepath.Join(f.good, "fullchain.pem"), "chain": notCert}}, "chain " + notCert + " is not a PEM bundle"},
		{"fullchain of another", event.Deploy, map[string]map[string]string{"example.com": {"certificate": gc, "private_key": gk, "fullchain": filepath.Join(f.other, "fullchain.pem")}}, "does not start with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.checker.Check(tc.op, tc.domains)
			if err == nil {
				t.Fatal("accepted")
			}
			if !certs.IsInvalid(err) {
				t.Errorf("error %v is not an InvalidError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestWildcardCovers(t *testing.T) {
	l := testcerts.MustIssue(t, []string{"*.example.com", "example.com"}, testcerts.Options{})
	for d, want := range map[string]bool{"*.example.com": true, "a.example.com": true, "example.com": true, "*.other.com": false, "a.b.example.com": false} {
		if got := certs.Covers(l.Cert, d); got != want {
			t.Errorf("Covers(%q) = %v", d, got)
		}
	}
}

// dehydrated makes EC keys with `openssl ecparam -genkey`, which writes an
// EC PARAMETERS block before the key: such a key file is accepted as is.
func TestCheckAcceptsECParametersBeforeKey(t *testing.T) {
	f := newFixture(t)
	k, err := x509.ParsePKCS8PrivateKey(mustPEM(t, f.goodLeaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	params, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}) // prime256v1
	key := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	kp := filepath.Join(f.le, "ecparam-key.pem")
	if err := os.WriteFile(kp, key, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := f.checker.Check(event.Deploy, map[string]map[string]string{"example.com": {
		"certificate": filepath.Join(f.good, "cert.pem"), "private_key": kp}})
	if err != nil {
		t.Fatal(err)
	}
	if string(m["example.com"].PrivateKey) != string(key) {
		t.Error("the key file's bytes were not kept as they are")
	}
}

func mustPEM(t *testing.T, b []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

// A device node inside the roots is refused without being opened for
// reading (a driver may act on open): reading /dev/zero's twin would give
// zeros, not this message.
func TestCheckRefusesDeviceInsideRoots(t *testing.T) {
	testutil.NeedRoot(t)
	f := newFixture(t)
	dev := filepath.Join(f.le, "live", "zero.pem")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	_, err := f.checker.Check(event.Deploy, map[string]map[string]string{"example.com": {
		"certificate": dev, "private_key": filepath.Join(f.good, "privkey.pem")}})
	if err == nil || !certs.IsInvalid(err) || !strings.Contains(err.Error(), "zero.pem is not a regular file") {
		t.Fatalf("device node: %v", err)
	}
}

// The full chain is parsed once and the certificate and chain files are
// compared with it; a certificate file that is itself the whole chain (as
// lego writes .crt) and a chain file that is not the full chain's rest
// (but parses) are accepted as before, and the material says what the
// files hold.
func TestCheckChainForms(t *testing.T) {
	f := newFixture(t)
	gc, gk := filepath.Join(f.good, "cert.pem"), filepath.Join(f.good, "privkey.pem")
	fullchain := filepath.Join(f.good, "fullchain.pem")
	// Valid PEM, not the rest of this full chain (another lineage's
	// certificate: the test CA is shared, so its chain would be the same).
	otherChain := filepath.Join(f.other, "cert.pem")
	for _, tc := range []struct {
		name      string
		info      map[string]string
		fullchain []byte
		chain     []byte
	}{
		{"certbot lineage", map[string]string{"certificate": gc, "private_key": gk, "fullchain": fullchain, "chain": filepath.Join(f.good, "chain.pem")},
			f.goodLeaf.FullchainPEM(), f.goodLeaf.ChainPEM},
		{"bundle as certificate", map[string]string{"certificate": fullchain, "private_key": gk},
			f.goodLeaf.FullchainPEM(), f.goodLeaf.ChainPEM},
		{"bundle as certificate and fullchain", map[string]string{"certificate": fullchain, "private_key": gk, "fullchain": fullchain},
			f.goodLeaf.FullchainPEM(), f.goodLeaf.ChainPEM},
		{"chain not the full chain's rest", map[string]string{"certificate": gc, "private_key": gk, "fullchain": fullchain, "chain": otherChain},
			f.goodLeaf.FullchainPEM(), mustRead(t, otherChain)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := f.checker.Check(event.Deploy, map[string]map[string]string{"example.com": tc.info})
			if err != nil {
				t.Fatal(err)
			}
			got := m["example.com"]
			if string(got.Certificate) != string(f.goodLeaf.CertPEM) {
				t.Errorf("certificate is not the leaf alone:\n%s", got.Certificate)
			}
			if strings.TrimSpace(string(got.Fullchain)) != strings.TrimSpace(string(tc.fullchain)) {
				t.Errorf("fullchain:\n%s\nwant\n%s", got.Fullchain, tc.fullchain)
			}
			if strings.TrimSpace(string(got.Chain)) != strings.TrimSpace(string(tc.chain)) {
				t.Errorf("chain:\n%s\nwant\n%s", got.Chain, tc.chain)
			}
			if got.Fingerprint != f.goodLeaf.Fingerprint {
				t.Errorf("fingerprint %s, want %s", got.Fingerprint, f.goodLeaf.Fingerprint)
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
