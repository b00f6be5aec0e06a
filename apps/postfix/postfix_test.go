package postfix

import (
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	runBuildCases(t, []buildCase{
		{name: "defaults", entry: "  - {name: mail, type: postfix, domains: [mail.test]}\n",
			reloaders: "command /usr/sbin/postfix -c /etc/postfix reload",
			copy:      &apps.CopySpec{Certificate: DefaultFile, PrivateKey: DefaultFile, KeyMode: 0o600, CertMode: 0o644},
			verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}", StartTLS: "smtp"}},
		{name: "config dir", entry: "  - {name: mail, type: postfix, domains: [mail.test], options: {config_dir: /srv/pf}, verify: {address: '127.0.0.1:2525', starttls: smtp}}\n",
			reloaders: "command /usr/sbin/postfix -c /srv/pf reload",
			verify:    &apps.VerifySpec{Address: "127.0.0.1:2525", ServerName: "{domain}", StartTLS: "smtp"}},
		{name: "reload command overrides", entry: "  - {name: mail, type: postfix, domains: [mail.test], reload: {command: [/bin/true]}}\n",
			reloaders: "command /bin/true"},
		{name: "domains required", entry: "  - {name: mail, type: postfix}\n", err: "set domains"},
		{name: "unknown option", entry: "  - {name: mail, type: postfix, domains: [a.test], options: {dir: /x}}\n", err: `unknown key "dir"`},
		{name: "relative dir", entry: "  - {name: mail, type: postfix, domains: [a.test], options: {config_dir: etc}}\n", err: "absolute"},
	})
}
