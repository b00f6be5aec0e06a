package haproxy

import (
	"strings"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	runBuildCases(t, []buildCase{
		{name: "defaults", entry: "  - {name: lb, type: haproxy, domains: [a.test]}\n",
			reloaders: "haproxy runtime API /run/haproxy/admin.sock; systemd reload haproxy.service",
			copy:      &apps.CopySpec{Certificate: DefaultPEM, PrivateKey: DefaultPEM, KeyMode: 0o600, CertMode: 0o644},
			verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}"}},
		{name: "tcp socket, command fallback", entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {socket: '127.0.0.1:9999'}, reload: {command: [/bin/true]}}\n",
			reloaders: "haproxy runtime API 127.0.0.1:9999; command /bin/true"},
		{name: "separate files refused", entry: "  - {name: lb, type: haproxy, domains: [a.test], copy: {certificate: '/x/{domain}.crt', private_key: '/x/{domain}.key'}}\n", err: "same path"},
		{name: "bad socket", entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {socket: admin.sock}}\n", err: "options.socket"},
		{name: "tiny bufsize", entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {bufsize: 100}}\n", err: "bufsize"},
		{name: "domains required", entry: "  - {name: lb, type: haproxy}\n", err: "no domains"},
	})
}

func TestPayloadDropsEmptyLines(t *testing.T) {
	got := payload([]byte("-----BEGIN X-----\r\nAAAA\r\n\r\n-----END X-----\n\n  \n-----BEGIN Y-----\nBB\n-----END Y-----"))
	want := "-----BEGIN X-----\nAAAA\n-----END X-----\n-----BEGIN Y-----\nBB\n-----END Y-----\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOpenTransaction(t *testing.T) {
	for show, want := range map[string]string{
		"# filename\n/a.pem":                           "",
		"# transaction\n*/a.pem\n# filename\n/a.pem\n": "/a.pem",
		"": "",
	} {
		if got := openTransaction(show); got != want {
			t.Errorf("%q: got %q, want %q", strings.ReplaceAll(show, "\n", "|"), got, want)
		}
	}
}
