package dovecot

import (
	"github.com/certbus/certbus/apps/appstest"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "defaults", Entry: "  - {name: imap, type: dovecot, domains: [mail.test]}\n",
			Reloaders: "command /usr/bin/doveadm -c /etc/dovecot/dovecot.conf reload",
			Copy:      &apps.CopySpec{Certificate: DefaultCert, PrivateKey: DefaultKey, KeyMode: 0o600, CertMode: 0o644},
			Verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}", StartTLS: "imap"}},
		{Name: "implicit TLS", Entry: "  - {name: imap, type: dovecot, domains: [mail.test], options: {config: /srv/d.conf}, verify: {address: '127.0.0.1:993'}}\n",
			Reloaders: "command /usr/bin/doveadm -c /srv/d.conf reload",
			Verify:    &apps.VerifySpec{Address: "127.0.0.1:993", ServerName: "{domain}"}},
		{Name: "domains required", Entry: "  - {name: imap, type: dovecot}\n", Err: "set domains"},
		{Name: "unknown option", Entry: "  - {name: imap, type: dovecot, domains: [a.test], options: {conf: /x}}\n", Err: `unknown key "conf"`},
	})
}
