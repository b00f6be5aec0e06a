package postfix

import (
	"github.com/certbus/certbus/apps/appstest"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "defaults", Entry: "  - {name: mail, type: postfix, domains: [mail.test]}\n",
			Reloaders: "command /usr/sbin/postfix -c /etc/postfix reload",
			Copy:      &apps.CopySpec{Certificate: DefaultFile, PrivateKey: DefaultFile, KeyMode: 0o600, CertMode: 0o644},
			Verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}", StartTLS: "smtp"}},
		{Name: "config dir", Entry: "  - {name: mail, type: postfix, domains: [mail.test], options: {config_dir: /srv/pf}, verify: {address: '127.0.0.1:2525', starttls: smtp}}\n",
			Reloaders: "command /usr/sbin/postfix -c /srv/pf reload",
			Verify:    &apps.VerifySpec{Address: "127.0.0.1:2525", ServerName: "{domain}", StartTLS: "smtp"}},
		{Name: "reload command overrides", Entry: "  - {name: mail, type: postfix, domains: [mail.test], reload: {command: [/bin/true]}}\n",
			Reloaders: "command /bin/true"},
		{Name: "domains required", Entry: "  - {name: mail, type: postfix}\n", Err: "set domains"},
		{Name: "unknown option", Entry: "  - {name: mail, type: postfix, domains: [a.test], options: {dir: /x}}\n", Err: `unknown key "dir"`},
		{Name: "relative dir", Entry: "  - {name: mail, type: postfix, domains: [a.test], options: {config_dir: etc}}\n", Err: "absolute"},
	})
}
