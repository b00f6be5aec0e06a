package ejabberd

import (
	"github.com/certbus/certbus/internal/testutil"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		file      string
		hosts     []string
		certfiles []string
		endpoint  string
		direct    bool
		err       string
	}{
		{
			file:  "debian.yml",
			hosts: []string{"example.org", "chat.example.net", "localhost"},
			certfiles: []string{"/etc/ejabberd/letsencrypt/example.org/ejabberd.pem",
				"/etc/ejabberd/letsencrypt/chat.example.net/ejabberd.pem", "/etc/ejabberd/ejabberd.pem"},
			endpoint: "127.0.0.1:5222",
		},
		{
			file:      "macros.yml",
			hosts:     []string{"xmpp.example.com", "conference.example.com"},
			certfiles: []string{"/etc/ejabberd/letsencrypt/*/ejabberd.pem"},
			endpoint:  "192.0.2.7:15222",
		},
		{
			file:     "direct-tls.yml",
			hosts:    []string{"im.example.org"},
			endpoint: "[::1]:5223",
			direct:   true,
		},
		{file: "no-listen.yml", hosts: []string{"localhost"}},
		{file: "bad-hosts.yml", err: "bad-hosts.yml:1: hosts: line 2: want a list"},
		{file: "broken.yml", err: "broken.yml"},
		{file: "missing.yml", err: "no such file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Hosts, tc.hosts) {
				t.Errorf("hosts = %q, want %q", c.Hosts, tc.hosts)
			}
			if !reflect.DeepEqual(c.Certfiles, tc.certfiles) {
				t.Errorf("certfiles = %q, want %q", c.Certfiles, tc.certfiles)
			}
			addr, direct, ok := c.Endpoint()
			if addr != tc.endpoint || direct != tc.direct || ok != (tc.endpoint != "") {
				t.Errorf("endpoint = %q direct=%v ok=%v, want %q direct=%v", addr, direct, ok, tc.endpoint, tc.direct)
			}
		})
	}
}

func TestReads(t *testing.T) {
	c := &Config{Certfiles: []string{"/etc/ejabberd/letsencrypt/*/ejabberd.pem", "/srv/x.pem"}}
	for f, want := range map[string]bool{
		"/etc/ejabberd/letsencrypt/a.example/ejabberd.pem": true,
		"/srv/x.pem": true,
		"/etc/ejabberd/letsencrypt/a.example/other.pem": false,
	} {
		if c.Reads(f) != want {
			t.Errorf("Reads(%s) = %v", f, !want)
		}
	}
}

func buildApp(t *testing.T, entry string) (*apps.Spec, *observer.ObservedLogs, error) {
	t.Helper()
	var a config.App
	if err := yaml.Unmarshal([]byte(entry), &a); err != nil {
		t.Fatal(err)
	}
	a.Pos = config.Pos{File: "apps.yaml", Line: 4}
	core, logs := observer.New(zap.InfoLevel)
	s, err := apps.Build(&a, &apps.Env{LetsencryptDir: "/etc/letsencrypt", Log: zap.New(core),
		Reload: config.Reload{Timeout: config.Duration(5e9)}})
	return s, logs, err
}

func TestBuild(t *testing.T) {
	debian, _ := filepath.Abs("testdata/debian.yml")
	if _, err := user.Lookup(User); err != nil {
		// Without the ejabberd user the default owner is refused at load
		// time, naming the key to set.
		_, _, err := buildApp(t, "name: xmpp\ntype: ejabberd\noptions: {config: "+debian+"}\n")
		if err == nil || !strings.Contains(err.Error(), "apps.yaml:4") || !strings.Contains(err.Error(), "copy.owner") {
			t.Fatalf("no ejabberd user: err = %v", err)
		}
		testutil.Missing(t, "the ejabberd user does not exist (apt-get install ejabberd); the defaults need it")
	}
	s, logs, err := buildApp(t, "name: xmpp\ntype: ejabberd\noptions: {config: "+debian+"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Serves("example.org") || !s.Serves("chat.example.net") || s.Serves("www.example.org") {
		t.Errorf("domains %q", s.DomainList())
	}
	u, _ := user.Lookup(User)
	c := s.Copy
	if c == nil || c.Certificate != DefaultCopyPath || c.PrivateKey != DefaultCopyPath || c.KeyMode != 0o600 || u.Uid != strconv.Itoa(c.UID) {
		t.Errorf("copy %+v", c)
	}
	var names []string
	for _, r := range s.Reloaders {
		names = append(names, r.Name())
	}
	if want := []string{"ejabberdctl reload_config", "systemd restart ejabberd.service"}; !reflect.DeepEqual(names, want) {
		t.Errorf("chain %q, want %q", names, want)
	}
	if v := s.Verify; v == nil || v.Address != "127.0.0.1:5222" || v.StartTLS != "xmpp" || v.ServerName != "{domain}" {
		t.Errorf("verify %+v", s.Verify)
	}
	// localhost is hosted but the copy path is not among the certfiles.
	if w := logs.FilterMessageSnippet("certfiles do not name").All(); len(w) != 1 || w[0].ContextMap()["domain"] != "localhost" {
		t.Errorf("certfiles warnings: %+v", w)
	}

	// The common keys override: the fallback, the gentle step's argv, the
	// endpoint, the copy path.
	dir := t.TempDir()
	s, _, err = buildApp(t, "name: xmpp\ntype: ejabberd\nreload: {command: [/usr/sbin/ejabberdctl, restart]}\n"+
		"verify: {address: \"127.0.0.1:15222\", starttls: xmpp}\ncopy: {certificate: \""+dir+"/{domain}.pem\", private_key: \""+dir+"/{domain}.pem\"}\n"+
		"options: {config: "+debian+", ejabberdctl: [/usr/sbin/ejabberdctl, --ctl-config, /srv/x.cfg]}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Reloaders) != 2 || s.Reloaders[1].Name() != "command /usr/sbin/ejabberdctl restart" ||
		!reflect.DeepEqual(s.Reloaders[0].(*apps.CommandReloader).Argv, []string{"/usr/sbin/ejabberdctl", "--ctl-config", "/srv/x.cfg", "reload_config"}) {
		t.Errorf("chain %+v %+v", s.Reloaders[0], s.Reloaders[1])
	}
	if s.Verify.Address != "127.0.0.1:15222" || s.Copy.Certificate != dir+"/{domain}.pem" || s.Copy.UID != c.UID {
		t.Errorf("overrides: verify %+v copy %+v", s.Verify, s.Copy)
	}
	// An empty ejabberdctl drops the gentle step.
	s, _, err = buildApp(t, "name: xmpp\ntype: ejabberd\noptions: {config: "+debian+", ejabberdctl: []}\n")
	if err != nil || len(s.Reloaders) != 1 {
		t.Errorf("ejabberdctl: []: %v %+v", err, s.Reloaders)
	}
	// Discovery follows the file.
	f := filepath.Join(dir, "ejabberd.yml")
	os.WriteFile(f, []byte("hosts: [a.example]\n"), 0o644)
	s, _, err = buildApp(t, "name: xmpp\ntype: ejabberd\noptions: {config: "+f+"}\n")
	if err != nil || !s.Serves("a.example") {
		t.Fatalf("%v %q", err, s.DomainList())
	}
	os.WriteFile(f, []byte("hosts: [b.example]\n"), 0o644)
	if err := s.Rediscover(); err != nil || s.Serves("a.example") || !s.Serves("b.example") {
		t.Errorf("after the edit: %v %q", err, s.DomainList())
	}
}

func TestBuildRefuses(t *testing.T) {
	for entry, want := range map[string]string{
		"name: x\ntype: ejabberd\noptions: {config: ejabberd.yml}\n":              "options.config",
		"name: x\ntype: ejabberd\noptions: {ejabberdctl: [ejabberdctl]}\n":        "options.ejabberdctl[0]",
		"name: x\ntype: ejabberd\noptions: {hosts: [a.example]}\n":                "hosts",
		"name: x\ntype: ejabberd\ncopy: {owner: no-such-user-xyz}\noptions: {}\n": "copy.owner",
	} {
		_, _, err := buildApp(t, entry)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "apps.yaml:") {
			t.Errorf("%q: err = %v, want %q with file:line", entry, err, want)
		}
	}
}
