package hooks

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/testcerts"
)

// The handlers and arguments are those dehydrated 0.7 passes its hook (see
// docs/examples/hook.sh in dehydrated); the real dehydrated runs against
// pebble in cmd/certbus's client tests.
func TestDehydratedArgs(t *testing.T) {
	l := testcerts.MustIssue(t, []string{"example.org", "www.example.org"}, testcerts.Options{})
	dir := writeFiles(t, filepath.Join(t.TempDir(), "certs", "example.org"), map[string][]byte{
		"privkey-1700000000.pem": l.KeyPEM, "cert-1700000000.pem": l.CertPEM,
		"fullchain-1700000000.pem": l.FullchainPEM(), "chain-1700000000.pem": l.ChainPEM,
	})
	p := func(n string) string { return filepath.Join(dir, n+"-1700000000.pem") }
	deploy := []string{"deploy_cert", "example.org", p("privkey"), p("cert"), p("fullchain"), p("chain"), "1700000000"}
	for _, tc := range []struct {
		name  string
		args  []string
		op    event.Operation
		names []string
		error string
	}{
		{"deploy_cert", deploy, event.Deploy, []string{"example.org", "www.example.org"}, ""},
		{"deploy_cert without timestamp", deploy[:6], event.Deploy, []string{"example.org", "www.example.org"}, ""},
		{"startup_hook", []string{"startup_hook"}, event.Pre, nil, ""},
		{"exit_hook", []string{"exit_hook"}, event.Post, nil, ""},
		{"exit_hook after an error", []string{"exit_hook", "ERROR: challenge failed"}, event.Post, nil, ""},
		{"deploy_challenge", []string{"deploy_challenge", "example.org", "tok", "val"}, "", nil, ""},
		{"unchanged_cert", []string{"unchanged_cert", "example.org", p("privkey"), p("cert"), p("fullchain"), p("chain")}, "", nil, ""},
		{"generate_csr", []string{"generate_csr", "example.org", dir, "example.org www.example.org"}, "", nil, ""},
		{"dehydrated's own check", []string{"this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script"}, "", nil, ""},
		{"no handler", nil, "", nil, "no handler given"},
		{"short deploy_cert", deploy[:4], "", nil, "deploy_cert takes"},
		{"deploy_cert with a missing certificate", []string{"deploy_cert", "example.org", p("privkey"), filepath.Join(dir, "nope.pem"), p("fullchain"), p("chain"), "1"}, "", nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, d, err := Dehydrated(tc.args)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) || !IsUsage(err) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if op != tc.op {
				t.Fatalf("op %q, want %q", op, tc.op)
			}
			if got := domainNames(d); !reflect.DeepEqual(got, tc.names) {
				t.Errorf("domains %v, want %v", got, tc.names)
			}
			if op == event.Deploy {
				want := map[string]string{"private_key": p("privkey"), "certificate": p("cert"), "fullchain": p("fullchain"), "chain": p("chain")}
				for n, info := range d {
					if !reflect.DeepEqual(info, want) {
						t.Errorf("%s: %v, want %v", n, info, want)
					}
				}
			}
		})
	}
}
