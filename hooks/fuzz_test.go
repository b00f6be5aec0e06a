package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCertbotEnv: any environment gives a usage error or a well-formed
// domain map, never a panic.
func FuzzCertbotEnv(f *testing.F) {
	f.Add("deploy", "/etc/letsencrypt/live/a", "a.test www.a.test")
	f.Add("post", "/x", "")
	f.Add("deploy", "rel/x", "\x00 \t")
	f.Fuzz(func(t *testing.T, op, lineage, domains string) {
		d, err := Certbot(op, env(map[string]string{"RENEWED_LINEAGE": lineage, "RENEWED_DOMAINS": domains}))
		if err != nil {
			if !IsUsage(err) {
				t.Fatalf("not a usage error: %v", err)
			}
			return
		}
		if op != "deploy" && len(d) != 0 {
			t.Fatalf("%s carries domains: %v", op, d)
		}
		for name, info := range d {
			if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t\n") {
				t.Fatalf("bad domain key %q", name)
			}
			if !filepath.IsAbs(info["certificate"]) {
				t.Fatalf("relative path %q", info["certificate"])
			}
		}
	})
}

// checkDomains is what every client parser must produce on success.
func checkDomains(t *testing.T, d Domains) {
	for name, info := range d {
		if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t\n") {
			t.Fatalf("bad domain key %q", name)
		}
		for k, p := range info {
			if !filepath.IsAbs(p) {
				t.Fatalf("%s: relative %s path %q", name, k, p)
			}
		}
	}
}

// FuzzLegoAndAcmeShEnv: lego's and acme.sh's environments, with files that
// may or may not hold certificates, give a usage error or well-formed
// domains, never a panic.
func FuzzLegoAndAcmeShEnv(f *testing.F) {
	dir := f.TempDir()
	f.Add("a.test", "a.test.crt", "a.test.key", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add("", "", "", []byte(nil))
	f.Add("x", "/etc/passwd", "../k", []byte("junk"))
	f.Fuzz(func(t *testing.T, domain, cert, key string, content []byte) {
		if content != nil && cert != "" && !strings.ContainsAny(cert, "/\x00") {
			os.WriteFile(filepath.Join(dir, cert), content, 0o600)
			cert = filepath.Join(dir, cert)
		}
		envs := map[string]string{
			"LEGO_CERT_DOMAIN": domain, "LEGO_CERT_PATH": cert, "LEGO_CERT_KEY_PATH": key,
			"Le_Domain": domain, "CERT_PATH": cert, "CERT_KEY_PATH": key,
		}
		for _, parse := range []func(func(string) string) (Domains, error){Lego, AcmeSh} {
			d, err := parse(env(envs))
			if err == nil {
				checkDomains(t, d)
			}
		}
	})
}

// FuzzDehydratedArgs: any argument list is a usage error, a no-op, or a
// well-formed event.
func FuzzDehydratedArgs(f *testing.F) {
	f.Add("deploy_cert a.test /k /c /f /ch 1")
	f.Add("startup_hook")
	f.Add("invalid_challenge x y")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		op, d, err := Dehydrated(strings.Fields(line))
		if err != nil {
			return
		}
		if op != "" && !op.Valid() {
			t.Fatalf("invalid operation %q", op)
		}
		checkDomains(t, d)
	})
}
