package hooks

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/certbus/certbus/internal/testcerts"
)

// acme.sh is not packaged for Debian, so these tests drive the variables its
// _installcert exports to --reloadcmd (acme.sh 3.x: CERT_PATH,
// CERT_KEY_PATH, CA_CERT_PATH, CERT_FULLCHAIN_PATH, Le_Domain), over files
// laid out as acme.sh keeps them in ~/.acme.sh/<domain>[_ecc]/.
func TestAcmeShEnv(t *testing.T) {
	l := testcerts.MustIssue(t, []string{"*.example.org", "example.org"}, testcerts.Options{})
	dir := writeFiles(t, filepath.Join(t.TempDir(), ".acme.sh", "*.example.org_ecc"), map[string][]byte{
		"*.example.org.cer": l.CertPEM,
		"*.example.org.key": l.KeyPEM,
		"ca.cer":            l.ChainPEM,
		"fullchain.cer":     l.FullchainPEM(),
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	full := map[string]string{
		"Le_Domain": "*.example.org", "CERT_PATH": p("*.example.org.cer"), "CERT_KEY_PATH": p("*.example.org.key"),
		"CA_CERT_PATH": p("ca.cer"), "CERT_FULLCHAIN_PATH": p("fullchain.cer"),
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range full {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	all := map[string]string{"certificate": p("*.example.org.cer"), "private_key": p("*.example.org.key"), "chain": p("ca.cer"), "fullchain": p("fullchain.cer")}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		info  map[string]string
		error string
	}{
		{"all files", full, all, ""},
		{"no ca file yet", with("CA_CERT_PATH", p("gone.cer")),
			map[string]string{"certificate": all["certificate"], "private_key": all["private_key"], "fullchain": all["fullchain"]}, ""},
		{"no fullchain variable", with("CERT_FULLCHAIN_PATH", ""),
			map[string]string{"certificate": all["certificate"], "private_key": all["private_key"], "chain": all["chain"]}, ""},
		{"not run by acme.sh", nil, nil, "Le_Domain is not set"},
		{"no certificate", with("CERT_PATH", ""), nil, "CERT_PATH is not set"},
		{"no key", with("CERT_KEY_PATH", ""), nil, "CERT_KEY_PATH is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := AcmeSh(env(tc.env))
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) || !IsUsage(err) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := domainNames(d), []string{"*.example.org", "example.org"}; !reflect.DeepEqual(got, want) {
				t.Errorf("domains %v, want %v", got, want)
			}
			for n, info := range d {
				if !reflect.DeepEqual(info, tc.info) {
					t.Errorf("%s: %v, want %v", n, info, tc.info)
				}
			}
		})
	}
}
