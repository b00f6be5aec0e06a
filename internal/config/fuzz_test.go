package config

import (
	"strings"
	"testing"
)

// FuzzParse: the loader never panics, and every error names the file.
func FuzzParse(f *testing.F) {
	f.Add("apps:\n  - {name: a, type: service, domains: ['*']}\n")
	f.Add("reload: {debounce: 2s, max_delay: 1s}\n")
	f.Add("letsencrypt_dir: [\n")
	f.Add("apps: &a [*a]\n")
	f.Fuzz(func(t *testing.T, body string) {
		c, err := Parse("f.yaml", []byte(body))
		if err != nil {
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if err := c.checkApps(); err != nil && !strings.Contains(err.Error(), "f.yaml") {
			t.Fatalf("app error without the file name: %v", err)
		}
	})
}
