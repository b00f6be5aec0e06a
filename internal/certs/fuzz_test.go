package certs_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/testcerts"
)

// FuzzCheck feeds arbitrary operations, domain names, info keys, paths and
// file contents to the edge validator: it must never panic, and whatever it
// accepts must satisfy the rules of DESIGN section 3.
func FuzzCheck(f *testing.F) {
	le := f.TempDir()
	leaf, _ := testcerts.Shared().Issue([]string{"a.test"}, testcerts.Options{})
	live, _ := testcerts.WriteLineage(le, "a.test", 1, leaf)
	f.Add("deploy", "a.test", "certificate", filepath.Join(live, "cert.pem"), "private_key", filepath.Join(live, "privkey.pem"), []byte(nil))
	f.Add("deploy", "A.TEST", "certificate", "/etc/passwd", "private_key", "relative", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add("pre", "*.a.test", "lineage", live, "chain", "", leaf.KeyPEM)
	c := &certs.Checker{Roots: certs.NewRoots(le)}
	fuzzFile := filepath.Join(le, "fuzz.pem")
	f.Fuzz(func(t *testing.T, op, domain, k1, v1, k2, v2 string, content []byte) {
		if content != nil {
			os.WriteFile(fuzzFile, content, 0o644)
			if v2 == "" {
				v2 = fuzzFile
			}
		}
		m, err := c.Check(event.Operation(op), map[string]map[string]string{domain: {k1: v1, k2: v2}})
		if err != nil {
			if !certs.IsInvalid(err) {
				t.Fatalf("non-validation error for caller input: %v", err)
			}
			return
		}
		for d, mat := range m {
			if err := certs.CheckDomain(d); err != nil {
				t.Fatalf("accepted invalid domain %q", d)
			}
			if op != "deploy" {
				continue
			}
			leaf, err := x509.ParseCertificate(pemBlock(t, mat.Certificate))
			if err != nil || !certs.Covers(leaf, d) {
				t.Fatalf("accepted %q without a covering leaf", d)
			}
			for _, p := range mat.Paths {
				if !strings.HasPrefix(p, "/") {
					t.Fatalf("accepted relative path %q", p)
				}
			}
		}
	})
}

func pemBlock(t *testing.T, b []byte) []byte {
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("accepted material without a PEM certificate")
	}
	return blk.Bytes
}
