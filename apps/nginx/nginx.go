// Package nginx is the nginx app type. By default nginx reads the lineage
// itself (ssl_certificate /etc/letsencrypt/live/NAME/fullchain.pem), so
// nothing is copied and the app's domains are discovered from the
// certificates nginx's configuration names under letsencrypt_dir; a copy:
// block makes it copy like any other type (and then domains: is required).
//
// Every reload is preceded by a configuration test (nginx -t): nginx keeps
// its old configuration when a reload fails and `nginx -s reload` still
// exits 0 (certbot#7555), so a failed test is reported rather than sent,
// and only the verify handshake proves that a reload took.
//
// Options (all optional):
//
//	config: /etc/nginx/nginx.conf   # passed to nginx -c for the test and discovery
//	binary: /usr/sbin/nginx
//	config_test: true               # false: reload without nginx -t first
//
// Defaults: reload {units: [nginx.service], mode: reload}, verify {address:
// 127.0.0.1:443}.
package nginx

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	Config     string `yaml:"config"`
	Binary     string `yaml:"binary"`
	ConfigTest *bool  `yaml:"config_test"`
}

// Defaults of the nginx type.
const (
	DefaultConfig = "/etc/nginx/nginx.conf"
	DefaultBinary = "/usr/sbin/nginx"
	DefaultUnit   = "nginx.service"
	DefaultVerify = "127.0.0.1:443"
)

func init() {
	apps.Register(apps.Type{
		Name:  "nginx",
		Doc:   "nginx: reads the lineage (or a copy), nginx -t then reload, verified by a handshake",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if err := apps.PathOptions(a,
		apps.PathOption{Key: "config", Value: &o.Config, Default: DefaultConfig},
		apps.PathOption{Key: "binary", Value: &o.Binary, Default: DefaultBinary}); err != nil {
		return nil, err
	}
	d := apps.Defaults{
		Reload: &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeReload},
		Verify: &config.Verify{Address: DefaultVerify},
	}
	if a.Copy != nil {
		if a.Domains == nil {
			return nil, a.Pos.Errorf("app %q: with copy:, nginx cannot tell which domains it serves: set domains", a.Name)
		}
	} else {
		d.Discover = func() ([]string, error) { return Discover(o.Binary, o.Config, env.LetsencryptDir) }
	}
	s, err := apps.BuildCommon(a, env, d)
	if err != nil {
		return nil, err
	}
	if o.ConfigTest == nil || *o.ConfigTest {
		test := &apps.CommandReloader{Argv: []string{o.Binary, "-t", "-q", "-c", o.Config}, Label: "nginx -t"}
		for i, r := range s.Reloaders {
			s.Reloaders[i] = &TestedReloader{Test: test, Next: r}
		}
	}
	return s, nil
}

// TestedReloader runs a configuration test and, only if it passes, the
// reload. A daemon that keeps its old configuration on a bad reload would
// otherwise be told to reload and silently do nothing.
type TestedReloader struct {
	Test apps.Reloader
	Next apps.Reloader
}

// Name describes both steps.
func (t *TestedReloader) Name() string { return t.Test.Name() + ", then " + t.Next.Name() }

// Reload tests, then reloads.
func (t *TestedReloader) Reload(ctx context.Context, run apps.RunInfo) error {
	if err := t.Test.Reload(ctx, run); err != nil {
		return fmt.Errorf("configuration test failed, not reloading: %w", err)
	}
	return t.Next.Reload(ctx, run)
}

// Discover returns the DNS names of the certificates that nginx's
// configuration (as `nginx -T` prints it, includes resolved) loads from
// under leDir: the domains whose renewal nginx must pick up.
func Discover(binary, conf, leDir string) ([]string, error) {
	out, err := exec.Command(binary, "-T", "-q", "-c", conf).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s -T -c %s: %v: %s", binary, conf, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("%s -T: %w", binary, err)
	}
	return domainsOf(CertificatePaths(string(out)), leDir)
}

func domainsOf(paths []string, leDir string) ([]string, error) {
	root := filepath.Clean(leDir) + string(filepath.Separator)
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if !strings.HasPrefix(filepath.Clean(p), root) {
			continue
		}
		names, err := certNames(p)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

func certNames(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate named by nginx: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certificate named by nginx: %s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate named by nginx: %s: %w", path, err)
	}
	return c.DNSNames, nil
}

// CertificatePaths returns the arguments of every ssl_certificate directive
// in an nginx configuration text, in order, without duplicates; arguments
// holding variables ($ssl_server_name) are left out: they name no file.
func CertificatePaths(conf string) []string {
	toks := tokens(conf)
	seen := map[string]bool{}
	var out []string
	for i := 0; i+1 < len(toks); i++ {
		if toks[i].word && toks[i].s == "ssl_certificate" && (i == 0 || !toks[i-1].word) && toks[i+1].word {
			p := toks[i+1].s
			if !strings.Contains(p, "$") && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

type token struct {
	s    string
	word bool // false for ";", "{", "}"
}

// tokens splits nginx configuration syntax: words (quoted or not), and the
// punctuation ; { }. A # where a token would start begins a comment that
// runs to the end of the line.
func tokens(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			out = append(out, token{s: string(c)})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			out = append(out, token{s: b.String(), word: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n;{}", rune(s[j])) {
				j++
			}
			out = append(out, token{s: s[i:j], word: true})
			i = j
		}
	}
	return out
}
