// Package testcerts makes certificates and certbot-shaped lineages for
// tests: a CA, leaves for given names (RSA or ECDSA), and
// <dir>/live/<name>/{cert,chain,fullchain,privkey}.pem symlinked into
// <dir>/archive/<name>/*N.pem the way certbot lays them out. Real
// certificates from real certbot and pebble are used in the end-to-end tests;
// these are for unit and integration tests that need many or odd ones.
package testcerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CA signs leaves.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

var (
	caOnce sync.Once
	ca     *CA
)

// Shared returns one CA for the whole test binary (key generation is slow).
func Shared() *CA {
	caOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "certbus test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			panic(err)
		}
		c, _ := x509.ParseCertificate(der)
		ca = &CA{Cert: c, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	})
	return ca
}

// KeyType selects the leaf key.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota
	RSA
)

// Leaf is an issued certificate with its key, in PEM.
type Leaf struct {
	Cert        *x509.Certificate
	CertPEM     []byte
	KeyPEM      []byte
	ChainPEM    []byte
	Fingerprint string
}

// FullchainPEM is the leaf followed by the chain.
func (l *Leaf) FullchainPEM() []byte { return append(append([]byte{}, l.CertPEM...), l.ChainPEM...) }

// Options tune Issue.
type Options struct {
	Key       KeyType
	NotBefore time.Time
	NotAfter  time.Time
}

var serial int64 = 100
var serialMu sync.Mutex

// Issue makes a leaf for names.
func (ca *CA) Issue(names []string, o Options) (*Leaf, error) {
	var key crypto.Signer
	var err error
	switch o.Key {
	case RSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	serialMu.Lock()
	serial++
	sn := serial
	serialMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &Leaf{
		Cert:        c,
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		ChainPEM:    ca.PEM,
		Fingerprint: hex.EncodeToString(sum[:]),
	}, nil
}

// MustIssue is Issue for tests.
func MustIssue(t testing.TB, names []string, o Options) *Leaf {
	t.Helper()
	l, err := Shared().Issue(names, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// WriteLineage writes leaf as version n of lineage name under dir (a
// letsencrypt config dir) and points live/<name>/ at it, as certbot does.
// It returns the live directory.
func WriteLineage(dir, name string, n int, l *Leaf) (string, error) {
	archive := filepath.Join(dir, "archive", name)
	live := filepath.Join(dir, "live", name)
	for _, d := range []string{archive, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	files := map[string][]byte{
		"cert": l.CertPEM, "chain": l.ChainPEM, "fullchain": l.FullchainPEM(), "privkey": l.KeyPEM,
	}
	for base, data := range files {
		mode := os.FileMode(0o644)
		if base == "privkey" {
			mode = 0o600
		}
		a := filepath.Join(archive, fmt.Sprintf("%s%d.pem", base, n))
		if err := os.WriteFile(a, data, mode); err != nil {
			return "", err
		}
		link := filepath.Join(live, base+".pem")
		tmp := link + ".new"
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Join("..", "..", "archive", name, fmt.Sprintf("%s%d.pem", base, n)), tmp); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, link); err != nil {
			return "", err
		}
	}
	return live, nil
}

// MustLineage is WriteLineage for tests.
func MustLineage(t testing.TB, dir, name string, n int, l *Leaf) string {
	t.Helper()
	live, err := WriteLineage(dir, name, n, l)
	if err != nil {
		t.Fatal(err)
	}
	return live
}
