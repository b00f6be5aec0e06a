package dovecot

import (
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	runBuildCases(t, []buildCase{
		{name: "defaults", entry: "  - {name: imap, type: dovecot, domains: [mail.test]}\n",
			reloaders: "command /usr/bin/doveadm -c /etc/dovecot/dovecot.conf reload",
			copy:      &apps.CopySpec{Certificate: DefaultCert, PrivateKey: DefaultKey, KeyMode: 0o600, CertMode: 0o644},
			verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}", StartTLS: "imap"}},
		{name: "implicit TLS", entry: "  - {name: imap, type: dovecot, domains: [mail.test], options: {config: /srv/d.conf}, verify: {address: '127.0.0.1:993'}}\n",
			reloaders: "command /usr/bin/doveadm -c /srv/d.conf reload",
			verify:    &apps.VerifySpec{Address: "127.0.0.1:993", ServerName: "{domain}"}},
		{name: "domains required", entry: "  - {name: imap, type: dovecot}\n", err: "set domains"},
		{name: "unknown option", entry: "  - {name: imap, type: dovecot, domains: [a.test], options: {conf: /x}}\n", err: `unknown key "conf"`},
	})
}
