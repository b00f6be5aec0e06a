package postgresql

import (
	"github.com/certbus/certbus/apps/appstest"
	"github.com/certbus/certbus/internal/testutil"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	os.MkdirAll(data, 0o700)
	os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte(`# comment
data_directory = '`+data+`'		# where
port=5433
ssl_cert_file = 'it''s.crt'   # relative: data directory
include_if_exists 'missing.conf'
include_dir 'conf.d'
`), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "10-ssl.conf"), []byte("ssl_key_file '/etc/pg/server.key'\nport = 6000\n"), 0o644)
	os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), []byte("port = '7000'\n"), 0o600)
	s, err := ReadConfig(filepath.Join(dir, "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{DataDirectory: data, CertFile: filepath.Join(data, "it's.crt"), KeyFile: "/etc/pg/server.key", Port: 7000}
	if *s != want {
		t.Errorf("got %+v, want %+v", *s, want)
	}

	bare := filepath.Join(t.TempDir(), "postgresql.conf")
	os.WriteFile(bare, []byte("#ssl_cert_file = 'x'\n"), 0o644)
	s, err = ReadConfig(bare)
	if err != nil {
		t.Fatal(err)
	}
	want = Settings{DataDirectory: filepath.Dir(bare), CertFile: filepath.Join(filepath.Dir(bare), "server.crt"), KeyFile: filepath.Join(filepath.Dir(bare), "server.key"), Port: 5432}
	if *s != want {
		t.Errorf("defaults: got %+v, want %+v", *s, want)
	}

	os.WriteFile(bare, []byte("port = 'x'\n"), 0o644)
	if _, err := ReadConfig(bare); err == nil {
		t.Error("bad port accepted")
	}
	os.WriteFile(bare, []byte("ssl_cert_file = 'x\n"), 0o644)
	if _, err := ReadConfig(bare); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestBuild(t *testing.T) {
	u, err := user.Lookup(DefaultOwner)
	if err != nil {
		testutil.Missing(t, "no %s user (install postgresql): %v", DefaultOwner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	conf := filepath.Join(dir, "postgresql.conf")
	os.WriteFile(conf, []byte("port = 5544\n"), 0o644)
	snake := filepath.Join(dir, "snake.conf")
	os.WriteFile(snake, []byte("ssl_cert_file = '/etc/ssl/certs/ssl-cert-snakeoil.pem'\n"), 0o644)
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "from config", Entry: "  - {name: db, type: postgresql, domains: [db.test], options: {config: " + conf + "}}\n",
			Reloaders: "systemd reload postgresql.service",
			Copy:      &apps.CopySpec{Certificate: filepath.Join(dir, "server.crt"), PrivateKey: filepath.Join(dir, "server.key"), UID: uid, GID: gid, KeyMode: 0o600, CertMode: 0o644},
			Verify:    &apps.VerifySpec{Address: "127.0.0.1:5544", ServerName: "{domain}", StartTLS: "postgres"}},
		{Name: "explicit paths", Entry: "  - {name: db, type: postgresql, domains: [db.test], copy: {certificate: /srv/pg/c.pem, private_key: /srv/pg/k.pem, owner: root}, reload: {command: [/bin/true]}}\n",
			Reloaders: "command /bin/true",
			Copy:      &apps.CopySpec{Certificate: "/srv/pg/c.pem", PrivateKey: "/srv/pg/k.pem", GID: gid, KeyMode: 0o600, CertMode: 0o644}},
		{Name: "snakeoil refused", Entry: "  - {name: db, type: postgresql, domains: [db.test], options: {config: " + snake + "}}\n", Err: "snakeoil"},
		{Name: "domains required", Entry: "  - {name: db, type: postgresql, options: {config: " + conf + "}}\n", Err: "set domains"},
		{Name: "missing config", Entry: "  - {name: db, type: postgresql, domains: [db.test], options: {config: /nonexistent/postgresql.conf}}\n", Err: "read PostgreSQL config"},
	})
}

func TestDebianUnit(t *testing.T) {
	m := debianConf.FindStringSubmatch("/etc/postgresql/15/main/postgresql.conf")
	if m == nil || "postgresql@"+m[1]+"-"+m[2]+".service" != "postgresql@15-main.service" {
		t.Errorf("got %q", m)
	}
}
