// Package postfix is the Postfix app type. It writes one file holding the
// private key followed by the full chain, the layout smtpd_tls_chain_files
// reads, so no smtpd process can ever load a new key with an old
// certificate (as it can with separate smtpd_tls_cert_file and
// smtpd_tls_key_file), then runs `postfix reload`: new smtpd processes read
// the file, old ones finish their session and exit.
//
// Point main.cf at the file: smtpd_tls_chain_files = /etc/postfix/certs/mail.example.org.pem
//
// Options (all optional):
//
//	config_dir: /etc/postfix   # passed to postfix -c
//	binary: /usr/sbin/postfix
//
// Defaults: copy {certificate and private_key: /etc/postfix/certs/{domain}.pem,
// owner root, key 0600} (smtpd reads it before dropping privileges), reload
// {command: [/usr/sbin/postfix, -c, CONFIG_DIR, reload]}, verify {address:
// 127.0.0.1:25, starttls: smtp}. domains: is required.
package postfix

import (
	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	ConfigDir string `yaml:"config_dir"`
	Binary    string `yaml:"binary"`
}

// Defaults of the postfix type.
const (
	DefaultConfigDir = "/etc/postfix"
	DefaultBinary    = "/usr/sbin/postfix"
	DefaultFile      = "/etc/postfix/certs/{domain}.pem"
	DefaultVerify    = "127.0.0.1:25"
)

func init() {
	apps.Register(apps.Type{
		Name:  "postfix",
		Doc:   "Postfix: one key+chain file (smtpd_tls_chain_files), postfix reload, verified by SMTP STARTTLS",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if err := apps.PathOptions(a,
		apps.PathOption{Key: "config_dir", Value: &o.ConfigDir, Default: DefaultConfigDir},
		apps.PathOption{Key: "binary", Value: &o.Binary, Default: DefaultBinary}); err != nil {
		return nil, err
	}
	if a.Domains == nil {
		return nil, a.Pos.Errorf("app %q: set domains: the names Postfix answers for", a.Name)
	}
	return apps.BuildCommon(a, env, apps.Defaults{
		Copy:   &config.Copy{Certificate: DefaultFile, PrivateKey: DefaultFile},
		Reload: &config.AppReload{Command: []string{o.Binary, "-c", o.ConfigDir, "reload"}},
		Verify: &config.Verify{Address: DefaultVerify, StartTLS: "smtp"},
	})
}
