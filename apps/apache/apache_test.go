package apache

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDiscover(t *testing.T) {
	const le = "/etc/letsencrypt"
	for _, tc := range []struct {
		name     string
		root     string            // a testdata tree, or
		files    map[string]string // a tree written for the case
		domains  []string
		endpoint string
		why      string
		err      string
	}{
		{
			name: "debian layout with certbot's vhosts",
			root: "testdata/debian",
			domains: []string{"*.blog.example.net", "blog.example.net", "example.org", "intranet.example.org",
				"news.example.net", "shop.example.com", "www.example.org"},
			endpoint: "127.0.0.1:443",
		},
		{
			name: "no vhost uses a lineage",
			files: map[string]string{"apache2.conf": "Listen 443\n<VirtualHost *:443>\nServerName a.example\nSSLEngine on\n" +
				"SSLCertificateFile /etc/ssl/certs/ssl-cert-snakeoil.pem\n</VirtualHost>\n"},
			domains: nil,
		},
		{
			name: "vhosts on two ports share no endpoint",
			files: map[string]string{"apache2.conf": "Include sites/*.conf\n",
				"sites/a.conf": "<VirtualHost *:443>\nServerName a.example\nSSLCertificateFile /etc/letsencrypt/live/a/fullchain.pem\n</VirtualHost>\n",
				"sites/b.conf": "<VirtualHost *:8443>\nServerName b.example\nSSLCertificateFile /etc/letsencrypt/live/b/cert.pem\n</VirtualHost>\n"},
			domains: []string{"a.example", "b.example"},
			why:     "different addresses: 127.0.0.1:443, 127.0.0.1:8443",
		},
		{
			name: "wildcard vhost on a port Apache listens on for one address",
			files: map[string]string{"apache2.conf": "Listen 192.0.2.1:443 https\nListen 80\n" +
				"<VirtualHost *:443>\nServerName a.example\nSSLCertificateFile /etc/letsencrypt/live/a/fullchain.pem\n</VirtualHost>\n"},
			domains:  []string{"a.example"},
			endpoint: "192.0.2.1:443",
		},
		{
			name: "ipv6 wildcard",
			files: map[string]string{"apache2.conf": "<VirtualHost [::]:443 *:443>\nServerName a.example\n" +
				"SSLCertificateFile /etc/letsencrypt/live/a/fullchain.pem\n</VirtualHost>\n"},
			domains:  []string{"a.example"},
			endpoint: "[::1]:443",
		},
		{
			name: "ServerRoot moves relative includes and certificate paths",
			files: map[string]string{"apache2.conf": "ServerRoot /etc/letsencrypt\nInclude /nonexistent/*.conf\n" +
				"<VirtualHost 127.0.0.1:8443>\nServerName a.example\nSSLCertificateFile live/a/fullchain.pem\n</VirtualHost>\n"},
			domains:  []string{"a.example"},
			endpoint: "127.0.0.1:8443",
		},
		{
			name:  "missing main file",
			files: map[string]string{"httpd.conf": ""},
			err:   "apache2.conf: no such file",
		},
		{
			name:  "include loop",
			files: map[string]string{"apache2.conf": "Include apache2.conf\n"},
			err:   "nested deeper",
		},
		{
			name:  "unclosed vhost",
			files: map[string]string{"apache2.conf": "<VirtualHost *:443>\nServerName a.example\n"},
			err:   "never closed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tc.root
			if root == "" {
				root = writeTree(t, tc.files)
			}
			c, err := Parse(root)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := c.Discover(le)
			if !reflect.DeepEqual(d.Domains, tc.domains) {
				t.Errorf("domains = %q, want %q", d.Domains, tc.domains)
			}
			if d.Endpoint != tc.endpoint {
				t.Errorf("endpoint = %q, want %q", d.Endpoint, tc.endpoint)
			}
			if !strings.Contains(d.Why, tc.why) {
				t.Errorf("why = %q, want %q", d.Why, tc.why)
			}
		})
	}
}

func TestParseDetails(t *testing.T) {
	c, err := Parse("testdata/debian")
	if err != nil {
		t.Fatal(err)
	}
	var blog *VHost
	for i, v := range c.VHosts {
		if len(v.Names) > 0 && v.Names[0] == "blog.example.net" {
			blog = &c.VHosts[i]
		}
		for _, n := range v.Names {
			if strings.Contains(n, "tenants") || strings.Contains(n, "disabled") || strings.Contains(n, "old.") {
				t.Errorf("%s:%d: name %q from a macro body, a disabled site or a comment", v.File, v.Line, n)
			}
		}
	}
	if blog == nil {
		t.Fatal("blog vhost not found")
	}
	if want := filepath.Join("testdata/debian/sites-enabled/blog.conf"); blog.File != want || blog.Line != 1 {
		t.Errorf("blog at %s:%d", blog.File, blog.Line)
	}
	if blog.CertFile != "/etc/letsencrypt/live/blog.example.net/fullchain.pem" {
		t.Errorf("quoted path: %q", blog.CertFile)
	}
	if len(c.VHosts) != 7 {
		t.Errorf("%d vhosts, want 7", len(c.VHosts))
	}
}

func TestFields(t *testing.T) {
	for in, want := range map[string][]string{
		`a b  c`:                {"a", "b", "c"},
		`"a b" 'c d'`:           {"a b", "c d"},
		`x"y z"`:                {"xy z"},
		`"a \" b"`:              {`a " b`},
		"\tServerAlias  a\t b ": {"ServerAlias", "a", "b"},
	} {
		if got := fields(in); !reflect.DeepEqual(got, want) {
			t.Errorf("fields(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInLineage(t *testing.T) {
	for p, want := range map[string]bool{
		"/etc/letsencrypt/live/a/fullchain.pem":      true,
		"/etc/letsencrypt/archive/a/fullchain3.pem":  true,
		"/etc/letsencrypt/live/fullchain.pem":        false,
		"/etc/letsencrypt/keys/0001_key-certbot.pem": false,
		"/etc/letsencrypt-old/live/a/cert.pem":       false,
		"/etc/ssl/certs/ssl-cert-snakeoil.pem":       false,
	} {
		if got := InLineage(p, "/etc/letsencrypt/"); got != want {
			t.Errorf("InLineage(%s) = %v", p, got)
		}
	}
}

func buildApp(t *testing.T, le string, entry string) (*apps.Spec, error) {
	t.Helper()
	var a config.App
	if err := yaml.Unmarshal([]byte(entry), &a); err != nil {
		t.Fatal(err)
	}
	a.Pos = config.Pos{File: "apps.yaml", Line: 3}
	return apps.Build(&a, &apps.Env{LetsencryptDir: le, Log: zap.NewNop(),
		Reload: config.Reload{Timeout: config.Duration(5e9)}})
}

func TestBuild(t *testing.T) {
	root, _ := filepath.Abs("testdata/debian")
	s, err := buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\noptions: {config_root: "+root+"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Serves("www.example.org") || !s.Serves("x.blog.example.net") || s.Serves("disabled.example.org") || s.All {
		t.Errorf("domains %q", s.DomainList())
	}
	if s.Copy != nil {
		t.Error("apache copies nothing by default")
	}
	if len(s.Reloaders) != 1 || s.Reloaders[0].Name() != "systemd reload apache2.service" {
		t.Fatalf("reloaders %+v", s.Reloaders)
	}
	if s.Verify == nil || s.Verify.Address != "127.0.0.1:443" || s.Verify.ServerName != "{domain}" || s.Verify.StartTLS != "" {
		t.Errorf("verify %+v", s.Verify)
	}
	if s.RepeatAfter != DefaultRepeatReloadAfter {
		t.Errorf("repeat after %v, want the default %v", s.RepeatAfter, DefaultRepeatReloadAfter)
	}
	if s, err := buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\nreload: {mode: restart}\noptions: {config_root: "+root+"}\n"); err != nil || s.RepeatAfter != 0 {
		t.Errorf("reload.mode restart: repeat after %v, %v; want none (a second restart only drops connections again)", s, err)
	}
	for opt, want := range map[string]time.Duration{"0s": 0, "250ms": 250 * time.Millisecond} {
		s, err := buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\noptions: {config_root: "+root+", repeat_reload_after: "+opt+"}\n")
		if err != nil || s.RepeatAfter != want {
			t.Errorf("repeat_reload_after %s: %v, %v; want %v", opt, s, err, want)
		}
	}

	// The user's keys win: domains turn discovery off, verify and reload
	// replace the defaults.
	s, err = buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\ndomains: [\"*\"]\n"+
		"reload: {command: [/bin/true]}\nverify: {address: \"127.0.0.1:8443\"}\noptions: {config_root: "+root+"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !s.All || s.Discover != nil || s.Verify.Address != "127.0.0.1:8443" || s.Reloaders[0].Name() != "command /bin/true" {
		t.Errorf("overrides: all=%v verify=%+v reloaders=%s", s.All, s.Verify, s.Reloaders[0].Name())
	}

	for entry, want := range map[string]string{
		"name: web\ntype: apache\noptions: {config_root: etc/apache2}\n":  "apps.yaml:3: app \"web\": options.config_root",
		"name: web\ntype: apache\noptions: {configtest: [apache2ctl]}\n":  "options.configtest",
		"name: web\ntype: apache\noptions: {confg_root: /etc/apache2}\n":  "confg_root",
		"name: web\ntype: apache\noptions: {repeat_reload_after: -1s}\n":  "negative duration",
		"name: web\ntype: apache\noptions: {repeat_reload_after: soon}\n": "soon",
	} {
		if _, err := buildApp(t, "/etc/letsencrypt", entry); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", entry, err, want)
		}
	}
}

// TestConfigTestGuardsEveryMethod: a failing config test stops the reload
// with Apache's message; a passing one lets the method run.
func TestConfigTestGuardsEveryMethod(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	reload := filepath.Join(dir, "reload.sh")
	os.WriteFile(reload, []byte("#!/bin/sh\necho reloaded >> "+ran+"\n"), 0o755)
	broken := filepath.Join(dir, "test-broken.sh")
	os.WriteFile(broken, []byte("#!/bin/sh\necho \"AH00526: Syntax error on line 3 of /etc/apache2/sites-enabled/x.conf:\"\n"+
		"echo \"Invalid command 'SSLCertificateFil', perhaps misspelled\"\nexit 1\n"), 0o755)
	root := writeTree(t, map[string]string{"apache2.conf": ""})
	for _, tc := range []struct {
		test string
		err  string
		runs int
	}{
		{broken, "Invalid command 'SSLCertificateFil'", 0},
		{"/bin/true", "", 1},
	} {
		s, err := buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\nreload: {command: ["+reload+"]}\n"+
			"options: {config_root: "+root+", configtest: ["+tc.test+"]}\n")
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(ran)
		err = s.Reloaders[0].Reload(context.Background(), apps.RunInfo{EventID: "e1", Operation: "post"})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "not reloaded")) {
			t.Errorf("config test %s: err = %v, want %q", tc.test, err, tc.err)
		}
		b, _ := os.ReadFile(ran)
		if n := strings.Count(string(b), "\n"); n != tc.runs {
			t.Errorf("config test %s: reload ran %d times, want %d", tc.test, n, tc.runs)
		}
	}
}

// The second graceful of an event (repeat_reload_after) skips the config
// test that passed for it a moment ago; the next event tests again.
func TestRepeatSkipsConfigTest(t *testing.T) {
	dir := t.TempDir()
	tests := filepath.Join(dir, "tests")
	test := filepath.Join(dir, "test.sh")
	os.WriteFile(test, []byte("#!/bin/sh\necho tested >> "+tests+"\n"), 0o755)
	root := writeTree(t, map[string]string{"apache2.conf": ""})
	s, err := buildApp(t, "/etc/letsencrypt", "name: web\ntype: apache\nreload: {command: [/bin/true]}\n"+
		"options: {config_root: "+root+", configtest: ["+test+"]}\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"e1", "e1", "e2"} {
		if err := s.Reloaders[0].Reload(context.Background(), apps.RunInfo{EventID: id, Operation: "post"}); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(tests); strings.Count(string(b), "\n") != 2 {
		t.Errorf("config test ran %d times for e1, e1, e2; want 2", strings.Count(string(b), "\n"))
	}
}
