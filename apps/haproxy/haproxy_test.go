package haproxy

import (
	"github.com/certbus/certbus/apps/appstest"
	"strings"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "defaults", Entry: "  - {name: lb, type: haproxy, domains: [a.test]}\n",
			Reloaders: "haproxy runtime API /run/haproxy/admin.sock; systemd reload haproxy.service",
			Copy:      &apps.CopySpec{Certificate: DefaultPEM, PrivateKey: DefaultPEM, KeyMode: 0o600, CertMode: 0o644},
			Verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}"}},
		{Name: "tcp socket, command fallback", Entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {socket: '127.0.0.1:9999'}, reload: {command: [/bin/true]}}\n",
			Reloaders: "haproxy runtime API 127.0.0.1:9999; command /bin/true"},
		{Name: "separate files refused", Entry: "  - {name: lb, type: haproxy, domains: [a.test], copy: {certificate: '/x/{domain}.crt', private_key: '/x/{domain}.key'}}\n", Err: "same path"},
		{Name: "bad socket", Entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {socket: admin.sock}}\n", Err: "options.socket"},
		{Name: "tiny bufsize", Entry: "  - {name: lb, type: haproxy, domains: [a.test], options: {bufsize: 100}}\n", Err: "bufsize"},
		{Name: "domains required", Entry: "  - {name: lb, type: haproxy}\n", Err: "no domains"},
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
