package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsAndDropIns(t *testing.T) {
	dir := t.TempDir()
	main := write(t, dir, "certbus.yaml", `
apps_dir: `+dir+`/apps.d
apps:
  - name: web
    type: service
    domains: ["*"]
    copy:
      certificate: /srv/tls/{domain}/fullchain.pem
      private_key: /srv/tls/{domain}/privkey.pem
    reload:
      units: [nginx.service]
      mode: reload
    verify: {address: "127.0.0.1:443"}
`)
	write(t, dir, "apps.d/10-mail.yaml", "apps:\n  - name: mail\n    type: postfix\n    domains: [mail.example.com]\n    options: {x: 1}\n")
	write(t, dir, "apps.d/ignored.txt", "not yaml: [")
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	if c.LetsencryptDir != "/etc/letsencrypt" || c.StateDir != "/var/lib/certbus" || c.AllowedGroups[0] != "certbus" {
		t.Errorf("defaults: %+v", c)
	}
	if time.Duration(c.Reload.Debounce) != 2*time.Second || time.Duration(c.Reload.MaxDelay) != 10*time.Minute || time.Duration(c.Reload.Timeout) != time.Minute {
		t.Errorf("reload defaults: %+v", c.Reload)
	}
	if len(c.Apps) != 2 || c.Apps[1].Name != "mail" || c.Apps[1].Pos.Line != 2 || !strings.HasSuffix(c.Apps[1].Pos.File, "10-mail.yaml") {
		t.Fatalf("apps: %+v", c.Apps)
	}
	if c.Apps[0].Pos.Line != 4 || c.Apps[0].Reload.Units[0] != "nginx.service" {
		t.Errorf("web: %+v", c.Apps[0])
	}
	var opts struct {
		X int `yaml:"x"`
	}
	if err := c.Apps[1].DecodeOptions(&opts); err != nil || opts.X != 1 {
		t.Errorf("options: %v %+v", err, opts)
	}
	var strict struct {
		Y int `yaml:"y"`
	}
	if err := c.Apps[1].DecodeOptions(&strict); err == nil || !strings.Contains(err.Error(), "10-mail.yaml:5") {
		t.Errorf("unknown option: %v", err)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown top key", "letsencrypt_dri: /x\n", "c.yaml:1: unknown key \"letsencrypt_dri\""},
		{"unknown app key", "apps:\n  - name: a\n    type: service\n    domain: [x]\n", "c.yaml:4: unknown key \"domain\""},
		{"unknown nested key", "apps:\n  - name: a\n    type: service\n    domains: ['*']\n    copy: {certificat: /x}\n", "c.yaml:5: unknown key \"certificat\""},
		{"bad duration", "reload: {debounce: soon}\n", "c.yaml:1"},
		{"duplicate name", "apps:\n  - {name: a, type: service, domains: ['*']}\n  - {name: a, type: service, domains: ['*']}\n", "c.yaml:3: duplicate app name \"a\""},
		{"bad name", "apps:\n  - {name: A_b, type: service, domains: ['*']}\n", "c.yaml:2: app name"},
		{"units and command", "apps:\n  - name: a\n    type: service\n    domains: ['*']\n    reload: {units: [x.service], command: [/bin/true]}\n", "c.yaml:2: app \"a\": reload takes units or command"},
		{"relative command", "apps:\n  - {name: a, type: service, domains: ['*'], reload: {command: [true]}}\n", "absolute path"},
		{"bad mode", "apps:\n  - {name: a, type: service, domains: ['*'], reload: {units: [x], mode: bounce}}\n", "reload.mode"},
		{"bad starttls", "apps:\n  - {name: a, type: service, domains: ['*'], verify: {address: 'h:1', starttls: ftp}}\n", "starttls"},
		{"bad domain", "apps:\n  - {name: a, type: service, domains: ['bad domain']}\n", "domains"},
		{"relative dir", "state_dir: var/lib\n", "c.yaml:1: state_dir must be an absolute path"},
		{"max_delay below debounce", "reload:\n  debounce: 1m\n  max_delay: 10s\n", "c.yaml:3: reload.max_delay"},
		{"relative source dir", "source_dirs: [x]\n", "c.yaml:1: source_dirs"},
		{"syntax", "apps: [\n", "c.yaml:"},
		{"type mismatch", "allowed_users: 5\n", "c.yaml:1"},
		{"twice", "state_dir: /a\nstate_dir: /b\n", "c.yaml:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := write(t, dir, "c.yaml", "apps_dir: "+dir+"/none\n"+tc.body)
			_, err := Load(p)
			if err == nil {
				t.Fatal("accepted")
			}
			// The body starts on line 2 of the file.
			want := tc.want
			if i := strings.Index(want, "c.yaml:"); i >= 0 && len(want) > i+7 && want[i+7] >= '0' && want[i+7] <= '9' {
				n := int(want[i+7] - '0')
				want = want[:i+7] + string(rune('0'+n+1)) + want[i+8:]
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want it to contain %q", err, want)
			}
		})
	}
}

func TestBadDropInNamed(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "c.yaml", "apps_dir: "+dir+"/d\n")
	write(t, dir, "d/50-x.yaml", "apps:\n  - name: x\n    type: service\n    domains: ['*']\n    relod: {}\n")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "50-x.yaml:5") {
		t.Fatalf("err = %v", err)
	}
	write(t, dir, "d/60-y.yaml", "letsencrypt_dir: /x\n")
	os.Remove(filepath.Join(dir, "d/50-x.yaml"))
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "60-y.yaml:1") {
		t.Fatalf("drop-in with a top-level key: %v", err)
	}
}

// Drop-ins are parsed side by side but joined in name order, and of
// several bad ones the first by name is reported, every time.
func TestDropInsInNameOrder(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "c.yaml", "apps_dir: "+dir+"/d\n")
	const n = 60
	for i := range n {
		write(t, dir, fmt.Sprintf("d/%02d.yaml", i), fmt.Sprintf("# app %d\napps:\n  - name: app%02d\n    type: service\n    domains: [a%d.test]\n", i, i, i))
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Apps) != n {
		t.Fatalf("%d apps, want %d", len(c.Apps), n)
	}
	for i, a := range c.Apps {
		if a.Name != fmt.Sprintf("app%02d", i) || a.Pos.Line != 3 || filepath.Base(a.Pos.File) != fmt.Sprintf("%02d.yaml", i) {
			t.Fatalf("app %d: %s at %s:%d", i, a.Name, a.Pos.File, a.Pos.Line)
		}
	}
	write(t, dir, "d/17.yaml", "apps:\n  - name: x\n    relod: {}\n")
	write(t, dir, "d/42.yaml", "apps: [\n")
	for range 5 {
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "17.yaml") {
			t.Fatalf("two bad drop-ins: %v, want the first by name (17.yaml)", err)
		}
	}
}
