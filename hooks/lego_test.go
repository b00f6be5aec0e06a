package hooks

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/certbus/certbus/internal/testcerts"
)

// writeFiles writes name -> content under dir and returns dir.
func writeFiles(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func domainNames(d Domains) []string {
	var out []string
	for n := range d {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// legoStore lays out lego's certificates directory: <domain>.crt (the leaf
// and its chain: lego bundles by default), .key, .issuer.crt.
func legoStore(t *testing.T, l *testcerts.Leaf) string {
	return writeFiles(t, filepath.Join(t.TempDir(), ".lego", "certificates"), map[string][]byte{
		"example.org.crt":        l.FullchainPEM(),
		"example.org.key":        l.KeyPEM,
		"example.org.issuer.crt": l.ChainPEM,
		"leaf-only.crt":          l.CertPEM,
	})
}

func TestLegoEnv(t *testing.T) {
	l := testcerts.MustIssue(t, []string{"example.org", "WWW.example.org"}, testcerts.Options{})
	dir := legoStore(t, l)
	crt, key, issuer := filepath.Join(dir, "example.org.crt"), filepath.Join(dir, "example.org.key"), filepath.Join(dir, "example.org.issuer.crt")
	full := map[string]string{
		"LEGO_CERT_DOMAIN": "example.org", "LEGO_CERT_PATH": crt, "LEGO_CERT_KEY_PATH": key,
		"LEGO_ISSUER_CERT_PATH": issuer, "LEGO_ACCOUNT_EMAIL": "a@example.org",
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
	for _, tc := range []struct {
		name  string
		env   map[string]string
		names []string
		info  map[string]string
		error string
	}{
		{"bundle", full, []string{"example.org", "www.example.org"},
			map[string]string{"certificate": crt, "private_key": key, "chain": issuer}, ""},
		{"no issuer file", with("LEGO_ISSUER_CERT_PATH", filepath.Join(dir, "gone.issuer.crt")), []string{"example.org", "www.example.org"},
			map[string]string{"certificate": crt, "private_key": key}, ""},
		{"no-bundle leaf", with("LEGO_CERT_PATH", filepath.Join(dir, "leaf-only.crt")), []string{"example.org", "www.example.org"},
			map[string]string{"certificate": filepath.Join(dir, "leaf-only.crt"), "private_key": key, "chain": issuer}, ""},
		// The daemon refuses it, naming the domain: the hook does not judge.
		{"domain not in the certificate", with("LEGO_CERT_DOMAIN", "other.org"), []string{"example.org", "other.org", "www.example.org"},
			map[string]string{"certificate": crt, "private_key": key, "chain": issuer}, ""},
		{"not run by lego", nil, nil, nil, "LEGO_CERT_PATH is not set"},
		{"no key", with("LEGO_CERT_KEY_PATH", ""), nil, nil, "LEGO_CERT_KEY_PATH is not set"},
		{"missing certificate", with("LEGO_CERT_PATH", filepath.Join(dir, "nope.crt")), nil, nil, "no such file"},
		{"not a certificate", with("LEGO_CERT_PATH", key), nil, nil, "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Lego(env(tc.env))
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) || !IsUsage(err) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := domainNames(d); !reflect.DeepEqual(got, tc.names) {
				t.Errorf("domains %v, want %v", got, tc.names)
			}
			for n, info := range d {
				if !reflect.DeepEqual(info, tc.info) {
					t.Errorf("%s: %v, want %v", n, info, tc.info)
				}
			}
		})
	}
}

// lego's default --path is ./.lego: its variables are then relative to the
// directory lego (and so its hook) runs in.
func TestLegoRelativePaths(t *testing.T) {
	l := testcerts.MustIssue(t, []string{"example.org"}, testcerts.Options{})
	dir := legoStore(t, l)
	t.Chdir(filepath.Dir(filepath.Dir(dir)))
	d, err := Lego(env(map[string]string{
		"LEGO_CERT_DOMAIN": "example.org", "LEGO_CERT_PATH": ".lego/certificates/example.org.crt",
		"LEGO_CERT_KEY_PATH": ".lego/certificates/example.org.key", "LEGO_ISSUER_CERT_PATH": ".lego/certificates/example.org.issuer.crt",
	}))
	if err != nil {
		t.Fatal(err)
	}
	info := d["example.org"]
	real, _ := filepath.EvalSymlinks(dir)
	for k, base := range map[string]string{"certificate": "example.org.crt", "private_key": "example.org.key", "chain": "example.org.issuer.crt"} {
		if got, _ := filepath.EvalSymlinks(info[k]); !filepath.IsAbs(info[k]) || got != filepath.Join(real, base) {
			t.Errorf("%s = %q, want the absolute path of %s", k, info[k], base)
		}
	}
}
