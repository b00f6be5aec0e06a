package nginx

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/testcerts"
)

func buildYAML(t *testing.T, le, entry string) (*apps.Spec, error) {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte("apps:\n"+entry))
	if err != nil {
		t.Fatal(err)
	}
	return apps.Build(&c.Apps[0], &apps.Env{LetsencryptDir: le, Log: zap.NewNop(), Reload: c.Reload})
}

func TestCertificatePaths(t *testing.T) {
	conf := `# configuration file /etc/nginx/nginx.conf:
http {
  ssl_certificate /etc/letsencrypt/live/a.test/fullchain.pem; # default
  server {
    listen 443 ssl;
    ssl_certificate "/etc/letsencrypt/live/b test/fullchain.pem";
    ssl_certificate_key /etc/letsencrypt/live/b/privkey.pem;
    # ssl_certificate /commented/out.pem;
    ssl_certificate $ssl_server_name.crt;
    location /ssl_certificate { return 200 "ssl_certificate /not/a/directive;"; }
  }
  server { ssl_certificate /etc/letsencrypt/live/a.test/fullchain.pem; }
}`
	got := CertificatePaths(conf)
	want := []string{"/etc/letsencrypt/live/a.test/fullchain.pem", "/etc/letsencrypt/live/b test/fullchain.pem"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDomainsOfLineagesUnderLetsencryptDir(t *testing.T) {
	le := t.TempDir()
	live := testcerts.MustLineage(t, le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test", "WWW.a.test"}, testcerts.Options{}))
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "self.pem"), testcerts.MustIssue(t, []string{"other.test"}, testcerts.Options{}).CertPEM, 0o644)
	got, err := domainsOf([]string{filepath.Join(live, "fullchain.pem"), filepath.Join(other, "self.pem")}, le)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.test", "www.a.test"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := domainsOf([]string{filepath.Join(le, "live/gone/fullchain.pem")}, le); err == nil {
		t.Error("a missing certificate under letsencrypt_dir was not reported")
	}
}

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		name, entry string
		check       func(t *testing.T, s *apps.Spec)
		err         string
	}{
		{name: "defaults", entry: "  - {name: web, type: nginx, domains: [a.test]}\n", check: func(t *testing.T, s *apps.Spec) {
			if s.Copy != nil {
				t.Error("nginx copies by default")
			}
			if len(s.Reloaders) != 1 || s.Reloaders[0].Name() != "nginx -t, then systemd reload nginx.service" {
				t.Errorf("reloaders: %v", names(s))
			}
			tr := s.Reloaders[0].(*TestedReloader)
			if got := tr.Test.(*apps.CommandReloader).Argv; !reflect.DeepEqual(got, []string{DefaultBinary, "-t", "-q", "-c", DefaultConfig}) {
				t.Errorf("test argv %q", got)
			}
			if s.Verify == nil || s.Verify.Address != DefaultVerify || s.Verify.ServerName != "{domain}" {
				t.Errorf("verify %+v", s.Verify)
			}
		}},
		{name: "command and no test", entry: "  - {name: web, type: nginx, domains: [a.test], options: {config_test: false, config: /srv/n.conf}, reload: {command: [/usr/sbin/nginx, -s, reload]}}\n", check: func(t *testing.T, s *apps.Spec) {
			if len(s.Reloaders) != 1 || s.Reloaders[0].Name() != "command /usr/sbin/nginx -s reload" {
				t.Errorf("reloaders: %v", names(s))
			}
		}},
		{name: "copy", entry: "  - {name: web, type: nginx, domains: [a.test], copy: {certificate: '/etc/nginx/tls/{domain}.crt', private_key: '/etc/nginx/tls/{domain}.key'}}\n", check: func(t *testing.T, s *apps.Spec) {
			if s.Copy == nil || s.Copy.Certificate != "/etc/nginx/tls/{domain}.crt" {
				t.Errorf("copy %+v", s.Copy)
			}
		}},
		{name: "copy needs domains", entry: "  - {name: web, type: nginx, copy: {certificate: '/x/{domain}.pem'}}\n", err: "set domains"},
		{name: "unknown option", entry: "  - {name: web, type: nginx, domains: [a.test], options: {conf: /x}}\n", err: `unknown key "conf"`},
		{name: "relative config", entry: "  - {name: web, type: nginx, domains: [a.test], options: {config: nginx.conf}}\n", err: "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := buildYAML(t, "/etc/letsencrypt", tc.entry)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "test.yaml:2") {
					t.Fatalf("err = %v, want one naming test.yaml:2 and saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func names(s *apps.Spec) []string {
	var out []string
	for _, r := range s.Reloaders {
		out = append(out, r.Name())
	}
	return out
}
