// Package dovecot is the Dovecot app type. It copies the full chain and the
// key (both may stay root-only: Dovecot's config process reads them as root
// and hands them to the login processes), then runs `doveadm reload`, which
// makes the master re-read its configuration, certificates included. New
// logins get the new certificate; with shutdown_clients=yes (the default)
// a reload also ends existing sessions, which clients reconnect.
//
// Point dovecot.conf at the files:
//
//	ssl_cert = </etc/dovecot/certs/mail.example.org/fullchain.pem
//	ssl_key = </etc/dovecot/certs/mail.example.org/privkey.pem
//
// Options (all optional):
//
//	config: /etc/dovecot/dovecot.conf   # passed to doveadm -c
//	doveadm: /usr/bin/doveadm
//
// Defaults: copy {certificate: /etc/dovecot/certs/{domain}/fullchain.pem,
// private_key: /etc/dovecot/certs/{domain}/privkey.pem, owner root, key
// 0600}, reload {command: [/usr/bin/doveadm, -c, CONFIG, reload]}, verify
// {address: 127.0.0.1:143, starttls: imap} (for implicit TLS:
// {address: 127.0.0.1:993, starttls: ""}). domains: is required.
package dovecot

import (
	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	Config  string `yaml:"config"`
	Doveadm string `yaml:"doveadm"`
}

// Defaults of the dovecot type.
const (
	DefaultConfig  = "/etc/dovecot/dovecot.conf"
	DefaultDoveadm = "/usr/bin/doveadm"
	DefaultCert    = "/etc/dovecot/certs/{domain}/fullchain.pem"
	DefaultKey     = "/etc/dovecot/certs/{domain}/privkey.pem"
	DefaultVerify  = "127.0.0.1:143"
)

func init() {
	apps.Register(apps.Type{
		Name:  "dovecot",
		Doc:   "Dovecot: copy, doveadm reload, verified by IMAP STARTTLS (or implicit TLS)",
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
		apps.PathOption{Key: "doveadm", Value: &o.Doveadm, Default: DefaultDoveadm}); err != nil {
		return nil, err
	}
	if a.Domains == nil {
		return nil, a.Pos.Errorf("app %q: set domains: the names Dovecot answers for", a.Name)
	}
	return apps.BuildCommon(a, env, apps.Defaults{
		Copy:   &config.Copy{Certificate: DefaultCert, PrivateKey: DefaultKey},
		Reload: &config.AppReload{Command: []string{o.Doveadm, "-c", o.Config, "reload"}},
		Verify: &config.Verify{Address: DefaultVerify, StartTLS: "imap"},
	})
}
