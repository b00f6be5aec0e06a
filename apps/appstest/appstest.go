// Package appstest holds what the app types' tests share: building a Spec from a
// YAML entry and table-checking the result. For tests only.
package appstest

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

// BuildYAML builds the first app of an `apps:` list entry, as the daemon would.
func BuildYAML(t *testing.T, entry string) (*apps.Spec, error) {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte("apps:\n"+entry))
	if err != nil {
		t.Fatal(err)
	}
	return apps.Build(&c.Apps[0], &apps.Env{LetsencryptDir: "/etc/letsencrypt", Log: zap.NewNop(), Reload: c.Reload})
}

// ReloaderNames lists a spec's reload chain, "; "-separated.
func ReloaderNames(s *apps.Spec) string {
	var out []string
	for _, r := range s.Reloaders {
		out = append(out, r.Name())
	}
	return strings.Join(out, "; ")
}

// BuildCase is an app entry and what its Spec must look like, or the error
// it must give (naming test.yaml:2).
type BuildCase struct {
	Name, Entry string
	Reloaders   string
	Copy        *apps.CopySpec
	Verify      *apps.VerifySpec
	Err         string
}

// RunBuildCases runs each case as a subtest.
func RunBuildCases(t *testing.T, cases []BuildCase) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			s, err := BuildYAML(t, tc.Entry)
			if tc.Err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.Err) || !strings.Contains(err.Error(), "test.yaml:2") {
					t.Fatalf("err = %v, want one naming test.yaml:2 and saying %q", err, tc.Err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ReloaderNames(s); got != tc.Reloaders {
				t.Errorf("reloaders %q, want %q", got, tc.Reloaders)
			}
			if tc.Copy != nil && (s.Copy == nil || *s.Copy != *tc.Copy) {
				t.Errorf("copy %+v, want %+v", s.Copy, tc.Copy)
			}
			if tc.Verify != nil && (s.Verify == nil || *s.Verify != *tc.Verify) {
				t.Errorf("verify %+v, want %+v", s.Verify, tc.Verify)
			}
		})
	}
}
