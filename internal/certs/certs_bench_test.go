package certs

import (
	"crypto"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/go-acme/lego/v4/certcrypto"

	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/testcerts"
)

// The validation benchmarks run once per leaf key type, as sub-benchmarks
// named key=..., so that `benchstat -col /key` sets them side by side.
var benchKeys = []struct {
	name string
	key  testcerts.KeyType
}{
	{"rsa2048", testcerts.RSA},
	{"ecdsap256", testcerts.ECDSA},
}

// benchNames are the names a bench leaf covers, as a typical lineage does.
var benchNames = []string{"example.com", "www.example.com"}

func benchLeaf(b *testing.B, k testcerts.KeyType) (*testcerts.Leaf, *x509.Certificate, crypto.PrivateKey) {
	b.Helper()
	l := testcerts.MustIssue(b, benchNames, testcerts.Options{Key: k})
	certs, err := certcrypto.ParsePEMBundle(l.CertPEM)
	if err != nil {
		b.Fatal(err)
	}
	key, err := certcrypto.ParsePEMPrivateKey(l.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	return l, certs[0], key
}

// BenchmarkParsePEM parses what a deploy carries: the full chain and the key.
func BenchmarkParsePEM(b *testing.B) {
	for _, k := range benchKeys {
		b.Run("key="+k.name, func(b *testing.B) {
			l, _, _ := benchLeaf(b, k.key)
			full := l.FullchainPEM()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := certcrypto.ParsePEMBundle(full); err != nil {
					b.Fatal(err)
				}
				if _, err := certcrypto.ParsePEMPrivateKey(l.KeyPEM); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKeyMatch compares the key's public half with the leaf's.
func BenchmarkKeyMatch(b *testing.B) {
	for _, k := range benchKeys {
		b.Run("key="+k.name, func(b *testing.B) {
			_, leaf, key := benchLeaf(b, k.key)
			b.ReportAllocs()
			for b.Loop() {
				if err := matchKey(leaf, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCovers checks that the leaf covers every name of the event.
func BenchmarkCovers(b *testing.B) {
	for _, k := range benchKeys {
		b.Run("key="+k.name, func(b *testing.B) {
			_, leaf, _ := benchLeaf(b, k.key)
			b.ReportAllocs()
			for b.Loop() {
				for _, d := range benchNames {
					if !Covers(leaf, d) {
						b.Fatalf("%s not covered", d)
					}
				}
			}
		})
	}
}

// BenchmarkCheck is the whole edge validation of a deploy event for a
// certbot lineage on disk: confinement, four reads, parse, key match,
// coverage, expiry.
func BenchmarkCheck(b *testing.B) {
	for _, k := range benchKeys {
		b.Run("key="+k.name, func(b *testing.B) {
			l, _, _ := benchLeaf(b, k.key)
			le := filepath.Join(b.TempDir(), "le")
			live := testcerts.MustLineage(b, le, "example.com", 1, l)
			c := &Checker{Roots: NewRoots(le)}
			domains := map[string]map[string]string{}
			for _, n := range benchNames {
				domains[n] = map[string]string{
					event.KeyCertificate: filepath.Join(live, "cert.pem"),
					event.KeyPrivateKey:  filepath.Join(live, "privkey.pem"),
					event.KeyFullchain:   filepath.Join(live, "fullchain.pem"),
					event.KeyChain:       filepath.Join(live, "chain.pem"),
					event.KeyLineage:     live,
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Check(event.Deploy, domains); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
