package matrixsynapse

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		dir, name, from, tls, err string
	}{
		{dir: "debian", name: "matrix.example.org", from: "conf.d/server_name.yaml", tls: "127.0.0.1:8448"},
		{dir: "homeserver-only", name: "example.com", from: "homeserver.yaml", tls: "192.0.2.5:8448"},
		{dir: "no-name", err: "no server_name in"},
		{dir: "bad-name", err: "homeserver.yaml:1: server_name \"192.0.2.1\": not a domain name"},
		{dir: "empty", err: "neither"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", tc.dir)
			c, err := Load(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ServerName != tc.name || c.From != filepath.Join(dir, tc.from) || c.TLSAddress != tc.tls {
				t.Errorf("got %+v, want %s from %s, tls %s", c, tc.name, tc.from, tc.tls)
			}
		})
	}
}

func buildApp(t *testing.T, entry string) (*apps.Spec, error) {
	t.Helper()
	var a config.App
	if err := yaml.Unmarshal([]byte(entry), &a); err != nil {
		t.Fatal(err)
	}
	a.Pos = config.Pos{File: "apps.yaml", Line: 2}
	return apps.Build(&a, &apps.Env{LetsencryptDir: "/etc/letsencrypt", Log: zap.NewNop(),
		Reload: config.Reload{Timeout: config.Duration(5e9)}})
}

func TestBuild(t *testing.T) {
	dir, _ := filepath.Abs("testdata/debian")
	entry := "name: matrix\ntype: matrix-synapse\noptions: {config_dir: " + dir + "}\n"
	if _, err := user.Lookup(User); err != nil {
		// The default owner does not exist here (Synapse is not in
		// bookworm): refused at load time, naming the key to set.
		_, err := buildApp(t, entry)
		if err == nil || !strings.Contains(err.Error(), "apps.yaml:2") || !strings.Contains(err.Error(), `copy.owner: unknown "matrix-synapse"`) {
			t.Fatalf("err = %v", err)
		}
		entry += "copy: {owner: nobody}\n"
	}
	s, err := buildApp(t, entry)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.DomainList(); len(d) != 1 || d[0] != "matrix.example.org" {
		t.Errorf("domains %q", d)
	}
	g, _ := user.LookupGroup(Group)
	c := s.Copy
	if c.Certificate != filepath.Join(dir, CertFile) || c.PrivateKey != filepath.Join(dir, KeyFile) ||
		c.KeyMode != 0o600 || c.CertMode != 0o644 || g == nil || g.Gid != strconv.Itoa(c.GID) {
		t.Errorf("copy %+v", c)
	}
	if len(s.Reloaders) != 1 || s.Reloaders[0].Name() != "systemd reload-or-restart matrix-synapse.service" {
		t.Errorf("reloaders %+v", s.Reloaders)
	}
	if v := s.Verify; v == nil || v.Address != "127.0.0.1:8448" || v.ServerName != "{domain}" {
		t.Errorf("verify %+v", v)
	}

	// Overrides; no TLS listener, no default verify.
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "homeserver.yaml"), []byte("server_name: a.example\n"), 0o644)
	s, err = buildApp(t, "name: matrix\ntype: matrix-synapse\ncopy: {owner: nobody}\nreload: {command: [/bin/kill, -HUP, \"1234\"]}\n"+
		"options: {config_dir: "+tmp+"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Verify != nil || s.Reloaders[0].Name() != "command /bin/kill -HUP 1234" || s.Copy.UID != 65534 {
		t.Errorf("overrides: %+v %s %+v", s.Verify, s.Reloaders[0].Name(), s.Copy)
	}
	// server_name is read again before each event.
	os.MkdirAll(filepath.Join(tmp, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(tmp, "conf.d", "server_name.yaml"), []byte("server_name: b.example\n"), 0o644)
	if err := s.Rediscover(); err != nil || s.Serves("a.example") || !s.Serves("b.example") {
		t.Errorf("rediscover: %v %q", err, s.DomainList())
	}

	for entry, want := range map[string]string{
		"name: m\ntype: matrix-synapse\noptions: {config_dir: etc}\n":        "options.config_dir",
		"name: m\ntype: matrix-synapse\noptions: {server_name: a.example}\n": "unknown key \"server_name\"",
	} {
		if _, err := buildApp(t, entry); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", entry, err, want)
		}
	}
}
