package hooks

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCertbotEnv(t *testing.T) {
	lin := "/etc/letsencrypt/live/example.com"
	for _, tc := range []struct {
		name  string
		op    string
		env   map[string]string
		want  int    // number of domains
		error string // substring; "" = ok
	}{
		{"deploy", "deploy", map[string]string{"RENEWED_LINEAGE": lin, "RENEWED_DOMAINS": "example.com www.example.com"}, 2, ""},
		{"deploy upper-case", "deploy", map[string]string{"RENEWED_LINEAGE": lin, "RENEWED_DOMAINS": " Example.COM "}, 1, ""},
		{"deploy without env", "deploy", nil, 0, "RENEWED_LINEAGE and RENEWED_DOMAINS are not set"},
		{"deploy without domains", "deploy", map[string]string{"RENEWED_LINEAGE": lin}, 0, "not set"},
		{"relative lineage", "deploy", map[string]string{"RENEWED_LINEAGE": "live/x", "RENEWED_DOMAINS": "x.org"}, 0, "not an absolute path"},
		{"pre", "pre", nil, 0, ""},
		// certbot 2.1.0 leaves the last deploy's variables in a post hook's
		// environment: they must not become the event.
		{"post ignores stale deploy vars", "post", map[string]string{"RENEWED_LINEAGE": lin, "RENEWED_DOMAINS": "example.com"}, 0, ""},
		{"unknown", "renew", nil, 0, "unknown hook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Certbot(tc.op, env(tc.env))
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) || !IsUsage(err) {
					t.Fatalf("err = %v, want usage error with %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(d) != tc.want {
				t.Fatalf("domains = %v", d)
			}
			for name, info := range d {
				if name != strings.ToLower(name) {
					t.Errorf("domain %q not lower-cased", name)
				}
				if info["certificate"] != lin+"/cert.pem" || info["private_key"] != lin+"/privkey.pem" ||
					info["fullchain"] != lin+"/fullchain.pem" || info["chain"] != lin+"/chain.pem" || info["lineage"] != lin {
					t.Errorf("info = %v", info)
				}
			}
		})
	}
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, op := range []string{"pre", "deploy", "post"} {
		d := Domains{}
		if op == "deploy" {
			d = LineageDomains("/le/live/a", []string{"a.test"})
		}
		p, err := Spool(dir, op, d)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("spool file mode %v", st.Mode().Perm())
		}
		paths = append(paths, p)
		_ = i
	}
	if st, _ := os.Stat(SpoolDir(dir)); st.Mode().Perm() != 0o700 {
		t.Errorf("spool dir mode %v", st.Mode().Perm())
	}
	os.WriteFile(filepath.Join(SpoolDir(dir), "00000000000000000001-bad.json"), []byte("{torn"), 0o600)
	got, errs := ReadSpool(dir)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "corrupt") {
		t.Errorf("errs = %v", errs)
	}
	if len(got) != 3 || got[0].Operation != "pre" || got[1].Operation != "deploy" || got[2].Operation != "post" {
		t.Fatalf("order: %+v", got)
	}
	if got[1].Domains["a.test"]["lineage"] != "/le/live/a" {
		t.Errorf("domains lost: %+v", got[1].Domains)
	}
	if _, err := os.Stat(filepath.Join(SpoolDir(dir), "corrupt", "00000000000000000001-bad.json")); err != nil {
		t.Errorf("corrupt file not moved aside: %v", err)
	}
}

// A clock stepped back between two hooks does not reorder their events:
// a name never sorts before the newest one already spooled.
func TestSpoolOrderSurvivesAClockStepBack(t *testing.T) {
	dir := t.TempDir()
	pre, err := Spool(dir, "pre", Domains{})
	if err != nil {
		t.Fatal(err)
	}
	// The pre as if spooled an hour "later" by a clock since set back.
	ahead := filepath.Join(SpoolDir(dir), fmt.Sprintf("%020d-00000000.json", time.Now().Add(time.Hour).UnixNano()))
	if err := os.Rename(pre, ahead); err != nil {
		t.Fatal(err)
	}
	if _, err := Spool(dir, "post", Domains{}); err != nil {
		t.Fatal(err)
	}
	got, errs := ReadSpool(dir)
	if len(errs) != 0 || len(got) != 2 || got[0].Operation != "pre" || got[1].Operation != "post" {
		t.Errorf("spooled %+v (%v), want pre then post", got, errs)
	}
}

func TestInstallScripts(t *testing.T) {
	le := t.TempDir()
	res, err := InstallScripts(le, "/usr/bin/certbus", false)
	if err != nil || len(res) != 3 || res[0].Action != "written" {
		t.Fatalf("%+v %v", res, err)
	}
	b, _ := os.ReadFile(filepath.Join(le, "renewal-hooks/deploy/50-certbus"))
	if !strings.Contains(string(b), "exec /usr/bin/certbus hook deploy\n") || !strings.HasPrefix(string(b), "#!/bin/sh\n") ||
		!strings.Contains(string(b), "\n[ -x /usr/bin/certbus-hook ] && GOMAXPROCS=1 exec /usr/bin/certbus-hook deploy\n") {
		t.Errorf("script:\n%s", b)
	}
	st, _ := os.Stat(filepath.Join(le, "renewal-hooks/pre/50-certbus"))
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	res, _ = InstallScripts(le, "/usr/bin/certbus", false)
	if res[1].Action != "unchanged" {
		t.Errorf("second run: %+v", res)
	}
	// A binary that moved: ours are rewritten.
	res, _ = InstallScripts(le, "/opt/certbus bin/certbus", false)
	b, _ = os.ReadFile(filepath.Join(le, "renewal-hooks/post/50-certbus"))
	if res[1].Action != "written" || !strings.Contains(string(b), "exec '/opt/certbus bin/certbus' hook post") {
		t.Errorf("rewrite: %+v\n%s", res, b)
	}
	// Someone else's file is kept without --force.
	foreign := filepath.Join(le, "renewal-hooks/deploy/50-certbus")
	os.WriteFile(foreign, []byte("#!/bin/sh\necho mine\n"), 0o755)
	res, _ = InstallScripts(le, "/usr/bin/certbus", false)
	if b, _ := os.ReadFile(foreign); string(b) != "#!/bin/sh\necho mine\n" || !strings.HasPrefix(res[2].Action, "kept") {
		t.Errorf("foreign file touched: %+v", res)
	}
	InstallScripts(le, "/usr/bin/certbus", true)
	if b, _ := os.ReadFile(foreign); !strings.Contains(string(b), "certbus hook deploy") {
		t.Error("--force did not replace it")
	}
	if _, err := InstallScripts(le, "certbus", false); err == nil {
		t.Error("relative binary accepted")
	}
}
