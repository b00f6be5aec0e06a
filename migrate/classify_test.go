package migrate

import (
	"slices"
	"testing"
)

func TestLegacyReason(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    string
	}{
		// FreedomBox, whatever the install path, with and without --modules.
		{"/usr/share/plinth/actions/letsencrypt run_pre_hooks --domain example.org", ReasonPlinth},
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain example.org --modules apache ejabberd", ReasonPlinth},
		{"/usr/local/share/plinth/actions/letsencrypt run_post_hooks --domain example.org", ReasonPlinth},
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --modules matrixsynapse --domain example.org", ReasonPlinth},
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain=example.org --modules", ReasonPlinth},
		{"letsencrypt run_renew_hooks --domain example.org", ReasonPlinth},
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks", ""},                                // no domain
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain", ""},                       // no value
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain a --domain b", ""},          // twice
		{"/usr/share/plinth/actions/letsencrypt setup --domain example.org", ""},                     // other action
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain a --force", ""},             // unknown flag
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain a; systemctl reload x", ""}, // compound
		{"/usr/share/plinth/actions/letsencrypt-old run_renew_hooks --domain example.org", ""},       // another program
		{"/usr/share/plinth/actions/letsencrypt run_renew_hooks --domain example.org # comment", ReasonPlinth},
		{"certbot renew", ""},

		// certbus itself.
		{"certbus hook deploy", ReasonCertbus},
		{"/usr/bin/certbus hook pre", ReasonCertbus},
		{"  /usr/local/bin/certbus   --bus system hook post  ", ReasonCertbus},
		{"CERTBUS_BUS=session certbus hook deploy", ReasonCertbus},
		{"env CERTBUS_BUS=session exec certbus hook deploy", ReasonCertbus},
		{"'/opt/my tools/certbus' hook deploy", ReasonCertbus},
		{"certbus hook deploy --wait || true", ""},
		{"certbus hook deploy && systemctl reload nginx", ""},
		{"certbus hook deploy > /var/log/x", ""},
		{"certbus hook deploy `date`", ""},
		{"certbus hook deploy $(date)", ""},
		{"certbus hook deploy\nsystemctl reload nginx", ""},
		{"sh -c 'certbus hook deploy'", ""},
		{"certbus-legacy hook deploy", ""},
		{"/opt/certbus/bin/reload", ""},
		{"echo certbus", ""},

		// Its D-Bus interface.
		{"busctl call org.certbus.Dispatcher1 /org/certbus/Dispatcher1 org.certbus.Dispatcher1 Notify 'sa{sa{ss}}' deploy 0", ReasonDBus},
		{`gdbus call --system --dest org.certbus.Dispatcher1 --object-path /org/certbus/Dispatcher1 --method org.certbus.Dispatcher1.Notify post "{}"`, ReasonDBus},
		{"dbus-send --system --dest=org.certbus.Dispatcher1 --print-reply /org/certbus/Dispatcher1 org.certbus.Dispatcher1.Notify string:pre", ReasonDBus},
		{"busctl call org.freedombox.Service /org/freedombox/Service/LetsEncrypt org.freedombox.Service.LetsEncrypt DeployHook ss a b", ""},
		{"logger org.certbus.Dispatcher1", ""},

		// Users' own hooks.
		{"systemctl reload nginx", ""},
		{"", ""},
		{"None", ""},
		{"'unterminated", ""},
		{`"unterminated`, ""},
		{`trailing\`, ""},
	} {
		if got := legacyReason(tc.command); got != tc.want {
			t.Errorf("legacyReason(%q) = %q, want %q", tc.command, got, tc.want)
		}
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"a b  c", []string{"a", "b", "c"}, true},
		{`a 'b c' "d e" f\ g`, []string{"a", "b c", "d e", "f g"}, true},
		{`a"b"'c'd`, []string{"abcd"}, true},
		{`"a \"q\" \$x \n"`, []string{`a "q" $x \n`}, true},
		{`'a \"'`, []string{`a \"`}, true},
		{"a $HOME ${X}", []string{"a", "$HOME", "${X}"}, true},
		{"a # b", []string{"a"}, true},
		{"a#b", []string{"a#b"}, true},
		{"''", []string{""}, true},
		{"", nil, true},
		{"a;b", nil, false},
		{"a & b", nil, false},
		{"a | b", nil, false},
		{"(a)", nil, false},
		{"a < b", nil, false},
		{`"$(a)"`, nil, false},
		{"a\rb", nil, false},
	} {
		got, ok := shellWords(tc.in)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
