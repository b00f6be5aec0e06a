package hooks

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCertbotEnv: any environment gives a usage error or a well-formed
// domain map, never a panic.
func FuzzCertbotEnv(f *testing.F) {
	f.Add("deploy", "/etc/letsencrypt/live/a", "a.test www.a.test")
	f.Add("post", "/x", "")
	f.Add("deploy", "rel/x", "\x00 \t")
	f.Fuzz(func(t *testing.T, op, lineage, domains string) {
		d, err := Certbot(op, env(map[string]string{"RENEWED_LINEAGE": lineage, "RENEWED_DOMAINS": domains}))
		if err != nil {
			if !IsUsage(err) {
				t.Fatalf("not a usage error: %v", err)
			}
			return
		}
		if op != "deploy" && len(d) != 0 {
			t.Fatalf("%s carries domains: %v", op, d)
		}
		for name, info := range d {
			if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t\n") {
				t.Fatalf("bad domain key %q", name)
			}
			if !filepath.IsAbs(info["certificate"]) {
				t.Fatalf("relative path %q", info["certificate"])
			}
		}
	})
}
