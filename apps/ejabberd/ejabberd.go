// Package ejabberd is the app type for ejabberd (Debian 23.01).
//
// Domains: the `hosts:` of ejabberd's own config, read again before each
// event, so an event's domains that ejabberd does not host are skipped. A
// `domains` list in the entry replaces discovery.
//
// Copy: the private key followed by the full chain into one file,
// /etc/ejabberd/letsencrypt/{domain}/ejabberd.pem, owned by
// ejabberd:ejabberd, mode 0600 (ejabberd reads its certificates as its own
// user). ejabberd.yml's `certfiles:` must name that file; the type warns
// at load time when it does not. (Name each file rather than a glob:
// ejabberd#4157 reports globbed paths not re-read.)
//
// Reload chain, gentlest first, each followed by verification:
//  1. `ejabberdctl reload_config`, which re-reads the certfiles;
//  2. try-restart of ejabberd.service: ejabberd#4007 reports 23.01 keeping
//     the old certificate after reload_config, so when verification still
//     sees the old leaf, a restart follows.
//
// The entry's `reload:` sets step 2 (e.g. reload.command on a host without
// systemd); options.ejabberdctl sets the argv that step 1 appends
// reload_config to, and an empty list drops step 1.
//
// Verify: an XMPP STARTTLS handshake (stream to the domain, SNI = the
// domain) on the first c2s listener of ejabberd.yml (127.0.0.1:5222 when
// none is found; direct TLS for a `tls: true` listener) must present the
// new leaf.
//
// Options (`options:` in the app's entry):
//
//	config: /etc/ejabberd/ejabberd.yml
//	ejabberdctl: [/usr/sbin/ejabberdctl]
package ejabberd

import (
	"path/filepath"
	"slices"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

// Defaults of the type.
const (
	DefaultConfig   = "/etc/ejabberd/ejabberd.yml"
	DefaultCopyPath = "/etc/ejabberd/letsencrypt/{domain}/ejabberd.pem"
	DefaultUnit     = "ejabberd.service"
	DefaultAddress  = "127.0.0.1:5222"
	User            = "ejabberd"
)

// DefaultEjabberdctl is the argv reload_config is appended to.
var DefaultEjabberdctl = []string{"/usr/sbin/ejabberdctl"}

type options struct {
	Config      string   `yaml:"config"`
	Ejabberdctl []string `yaml:"ejabberdctl"`
}

func init() {
	apps.Register(apps.Type{
		Name:  "ejabberd",
		Doc:   "ejabberd: domains from hosts:, key+chain to /etc/ejabberd/letsencrypt/{domain}/ejabberd.pem, reload_config then try-restart, XMPP STARTTLS verify",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{Config: DefaultConfig}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if o.Ejabberdctl == nil {
		o.Ejabberdctl = DefaultEjabberdctl
	}
	if !filepath.IsAbs(o.Config) {
		return nil, a.Pos.Errorf("app %q: options.config %q is not an absolute path", a.Name, o.Config)
	}
	if len(o.Ejabberdctl) > 0 && !filepath.IsAbs(o.Ejabberdctl[0]) {
		return nil, a.Pos.Errorf("app %q: options.ejabberdctl[0] %q must be an absolute path (no shell, no PATH lookup)", a.Name, o.Ejabberdctl[0])
	}
	log := env.Log.With(zap.String("app", a.Name), zap.String("config", o.Config))
	cfg, cfgErr := Load(o.Config) // for the defaults; discovery reads it again
	verify := &config.Verify{Address: DefaultAddress, StartTLS: "xmpp", ServerName: "{domain}"}
	if cfgErr == nil {
		if addr, direct, ok := cfg.Endpoint(); ok {
			verify.Address = addr
			if direct {
				verify.StartTLS = ""
			}
		}
	}
	s, err := apps.BuildCommon(a, env, apps.Defaults{
		Discover: func() ([]string, error) {
			c, err := Load(o.Config)
			if err != nil {
				return nil, err
			}
			return c.Hosts, nil
		},
		Copy:   &config.Copy{Certificate: DefaultCopyPath, PrivateKey: DefaultCopyPath, Owner: User, Group: User},
		Reload: &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeRestart},
		Verify: verify,
	})
	if err != nil {
		return nil, err
	}
	if len(o.Ejabberdctl) > 0 {
		gentle := &apps.CommandReloader{Argv: append(slices.Clone(o.Ejabberdctl), "reload_config"), Label: "ejabberdctl reload_config"}
		s.Reloaders = append([]apps.Reloader{gentle}, s.Reloaders...)
	}
	if cfgErr == nil && s.Copy != nil {
		for _, d := range s.DomainList() {
			if d == "*" {
				continue
			}
			if p := apps.ExpandPath(s.Copy.Certificate, d); !cfg.Reads(p) {
				log.Warn("ejabberd's certfiles do not name the file certbus installs; ejabberd will not use it",
					zap.String("domain", d), zap.String("file", p))
			}
		}
	}
	return s, nil
}
