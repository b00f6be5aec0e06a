// Package postgresql is the PostgreSQL app type. It copies the full chain
// and the key where postgresql.conf's ssl_cert_file and ssl_key_file point
// (owner postgres, key 0600, as PostgreSQL demands of a key its own user
// owns), then reloads: PostgreSQL (>= 10) re-reads its SSL files on SIGHUP
// and keeps the old context if the new one fails to load, which only the
// verify handshake (SSLRequest, then TLS) can reveal.
//
// Options (all optional):
//
//	config: /etc/postgresql/15/main/postgresql.conf   # default: the only /etc/postgresql/*/*/postgresql.conf
//
// The config gives the copy paths (relative ones are resolved against the
// data directory, as PostgreSQL does), the port for verify, and, for a
// Debian cluster, the unit postgresql@VERSION-CLUSTER.service. copy.certificate
// and copy.private_key override the paths; Debian's shared snakeoil files
// are refused as targets. On a host without systemd, set reload.command,
// e.g. [/usr/sbin/runuser, -u, postgres, --, /usr/lib/postgresql/15/bin/pg_ctl,
// reload, -D, DATADIR] (pg_ctl reload is what pg_reload_conf() does: a
// SIGHUP to the postmaster).
//
// Defaults: copy {owner: postgres, group: postgres}, reload {units:
// [postgresql@V-C.service or postgresql.service], mode: reload}, verify
// {address: 127.0.0.1:PORT, starttls: postgres}. domains: is required.
package postgresql

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	Config string `yaml:"config"`
}

// Defaults of the postgresql type.
const (
	DefaultUnit  = "postgresql.service"
	DefaultPort  = 5432
	DefaultOwner = "postgres"
)

// snakeoil files are shared by every service on a Debian host: overwriting
// them would change other daemons' certificate.
var snakeoil = map[string]bool{
	"/etc/ssl/certs/ssl-cert-snakeoil.pem":   true,
	"/etc/ssl/private/ssl-cert-snakeoil.key": true,
}

func init() {
	apps.Register(apps.Type{
		Name:  "postgresql",
		Doc:   "PostgreSQL: copy to ssl_cert_file/ssl_key_file (owner postgres), reload, verify by SSLRequest",
		Build: build,
	})
}

// debianConf matches /etc/postgresql/VERSION/CLUSTER/postgresql.conf.
var debianConf = regexp.MustCompile(`^/etc/postgresql/([^/]+)/([^/]+)/postgresql\.conf$`)

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if a.Domains == nil {
		return nil, a.Pos.Errorf("app %q: set domains: the names PostgreSQL's clients connect to", a.Name)
	}
	userPaths := a.Copy != nil && a.Copy.Certificate != "" && a.Copy.PrivateKey != ""
	if o.Config == "" {
		found, _ := filepath.Glob("/etc/postgresql/*/*/postgresql.conf")
		switch {
		case len(found) == 1:
			o.Config = found[0]
		case !userPaths:
			return nil, a.Pos.Errorf("app %q: found %d PostgreSQL configs under /etc/postgresql: set options.config (or copy.certificate and copy.private_key)", a.Name, len(found))
		}
	}
	d := apps.Defaults{
		Copy:   &config.Copy{Owner: DefaultOwner, Group: DefaultOwner},
		Reload: &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeReload},
		Verify: &config.Verify{Address: fmt.Sprintf("127.0.0.1:%d", DefaultPort), StartTLS: "postgres"},
	}
	if o.Config != "" {
		if !filepath.IsAbs(o.Config) {
			return nil, a.Pos.Errorf("app %q: options.config %q must be an absolute path", a.Name, o.Config)
		}
		set, err := ReadConfig(o.Config)
		if err != nil {
			return nil, a.Pos.Errorf("app %q: %v", a.Name, err)
		}
		d.Copy.Certificate, d.Copy.PrivateKey = set.CertFile, set.KeyFile
		d.Verify.Address = fmt.Sprintf("127.0.0.1:%d", set.Port)
		if m := debianConf.FindStringSubmatch(o.Config); m != nil {
			d.Reload.Units = []string{"postgresql@" + m[1] + "-" + m[2] + ".service"}
		}
	}
	s, err := apps.BuildCommon(a, env, d)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{s.Copy.Certificate, s.Copy.PrivateKey} {
		if snakeoil[p] {
			return nil, a.Pos.Errorf("app %q: PostgreSQL's ssl files are Debian's snakeoil %s, which other services share: point ssl_cert_file and ssl_key_file in %s at files of PostgreSQL's own (e.g. server.crt and server.key in the data directory), or set copy.certificate and copy.private_key", a.Name, p, o.Config)
		}
	}
	return s, nil
}

// Settings is what certbus needs from postgresql.conf, paths absolute.
type Settings struct {
	DataDirectory string
	CertFile      string
	KeyFile       string
	Port          int
}

// ReadConfig reads a postgresql.conf with its include, include_if_exists and
// include_dir directives, then postgresql.auto.conf in the data directory
// (ALTER SYSTEM), the last setting winning as in PostgreSQL. Unset values
// get PostgreSQL's defaults (server.crt, server.key, 5432); relative file
// names are resolved against the data directory (the config's own
// directory unless data_directory is set).
func ReadConfig(path string) (*Settings, error) {
	vals := map[string]string{}
	if err := readConf(path, vals, 0, true); err != nil {
		return nil, err
	}
	s := &Settings{DataDirectory: vals["data_directory"], CertFile: "server.crt", KeyFile: "server.key", Port: DefaultPort}
	if s.DataDirectory == "" {
		s.DataDirectory = filepath.Dir(path)
	}
	if err := readConf(filepath.Join(s.DataDirectory, "postgresql.auto.conf"), vals, 0, false); err != nil {
		return nil, err
	}
	if v := vals["ssl_cert_file"]; v != "" {
		s.CertFile = v
	}
	if v := vals["ssl_key_file"]; v != "" {
		s.KeyFile = v
	}
	if v := vals["port"]; v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%s: port %q is not a port number", path, v)
		}
		s.Port = p
	}
	for _, f := range []*string{&s.CertFile, &s.KeyFile} {
		if !filepath.IsAbs(*f) {
			*f = filepath.Join(s.DataDirectory, *f)
		}
	}
	return s, nil
}

func readConf(path string, vals map[string]string, depth int, required bool) error {
	if depth > 10 {
		return fmt.Errorf("%s: includes nested too deeply", path)
	}
	f, err := os.Open(path)
	if err != nil {
		if !required && os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("read PostgreSQL config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		name, value, ok, err := parseLine(sc.Text())
		if err != nil {
			return fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if !ok {
			continue
		}
		rel := func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(filepath.Dir(path), p)
		}
		switch name {
		case "include", "include_if_exists":
			if err := readConf(rel(value), vals, depth+1, name == "include"); err != nil {
				return err
			}
		case "include_dir":
			files, _ := filepath.Glob(filepath.Join(rel(value), "*.conf"))
			for _, inc := range files {
				if err := readConf(inc, vals, depth+1, true); err != nil {
					return err
				}
			}
		default:
			vals[name] = value
		}
	}
	return sc.Err()
}

// parseLine parses "name = value" or "name value", with an optional
// single-quoted value (in which two quotes stand for one) and a # comment.
func parseLine(l string) (name, value string, ok bool, err error) {
	l = strings.TrimSpace(l)
	if l == "" || l[0] == '#' {
		return "", "", false, nil
	}
	i := strings.IndexAny(l, " \t=")
	if i < 0 {
		return "", "", false, fmt.Errorf("no value for %q", l)
	}
	name = strings.ToLower(l[:i])
	rest := strings.TrimLeft(l[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	rest = strings.TrimLeft(rest, " \t")
	if strings.HasPrefix(rest, "'") {
		var b strings.Builder
		for j := 1; j < len(rest); j++ {
			if rest[j] == '\'' {
				if j+1 < len(rest) && rest[j+1] == '\'' {
					b.WriteByte('\'')
					j++
					continue
				}
				return name, b.String(), true, nil
			}
			b.WriteByte(rest[j])
		}
		return "", "", false, fmt.Errorf("unterminated quote in %q", l)
	}
	if j := strings.IndexAny(rest, " \t#"); j >= 0 {
		rest = rest[:j]
	}
	return name, rest, true, nil
}
