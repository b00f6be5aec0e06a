package haproxy

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

func buildYAML(t *testing.T, entry string) (*apps.Spec, error) {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte("apps:\n"+entry))
	if err != nil {
		t.Fatal(err)
	}
	return apps.Build(&c.Apps[0], &apps.Env{LetsencryptDir: "/etc/letsencrypt", Log: zap.NewNop(), Reload: c.Reload})
}

func names(s *apps.Spec) string {
	var out []string
	for _, r := range s.Reloaders {
		out = append(out, r.Name())
	}
	return strings.Join(out, "; ")
}

// buildCase is an app entry and what its Spec must look like, or the error
// it must give (naming test.yaml:2).
type buildCase struct {
	name, entry string
	reloaders   string
	copy        *apps.CopySpec
	verify      *apps.VerifySpec
	err         string
}

func runBuildCases(t *testing.T, cases []buildCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := buildYAML(t, tc.entry)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "test.yaml:2") {
					t.Fatalf("err = %v, want one naming test.yaml:2 and saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(s); got != tc.reloaders {
				t.Errorf("reloaders %q, want %q", got, tc.reloaders)
			}
			if tc.copy != nil && (s.Copy == nil || *s.Copy != *tc.copy) {
				t.Errorf("copy %+v, want %+v", s.Copy, tc.copy)
			}
			if tc.verify != nil && (s.Verify == nil || *s.Verify != *tc.verify) {
				t.Errorf("verify %+v, want %+v", s.Verify, tc.verify)
			}
		})
	}
}
