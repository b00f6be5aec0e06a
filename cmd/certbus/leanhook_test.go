package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/testcerts"
)

// certbus-hook must answer every call exactly as `certbus hook` does: the
// common case by itself, the rest by handing over to the certbus binary.
// Each case runs both and compares exit status and output (event ids and
// spool file names differ by nature and are masked).
func TestLeanHookAnswersAsCertbusHook(t *testing.T) {
	e := newEnv(t, false, brokenApp)
	live := testcerts.MustLineage(t, e.le, "a.test", 1, testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{}))
	full := buildBinary(t)
	lean := filepath.Join(filepath.Dir(full), "certbus-hook")
	mask := regexp.MustCompile(`\d{8}T\d{6}Z-\d+-[0-9a-f]{6}|spool/[^ ]+\.json`)
	run := func(bin string, args []string, extra ...string) (string, int) {
		t.Helper()
		if bin == full {
			args = append([]string{"hook"}, args...)
		}
		out, code := e.run(t, bin, args, extra...)
		return mask.ReplaceAllString(out, "X"), code
	}
	deploy := []string{"RENEWED_LINEAGE=" + live, "RENEWED_DOMAINS=a.test"}
	cases := []struct {
		name  string
		args  []string
		env   []string
		code  int
		want  string // in the output
		setup func()
		// before each side: a deploy, so that each has a reload to wait for
		deployFirst bool
	}{
		{name: "no daemon: spooled", args: []string{"deploy"}, env: deploy, want: "spooled to"},
		{name: "daemon takes it", args: []string{"deploy"}, env: deploy, want: "deploy event X delivered",
			setup: func() { startDaemon(t, e.bus.Address, e.config) }},
		{name: "bus flag", args: []string{"--bus", e.bus.Address, "pre"}, want: "pre event X delivered"},
		{name: "bus= flag", args: []string{"--bus=" + e.bus.Address, "--config=" + e.config, "post"}, want: "post event X delivered"},
		{name: "refused", args: []string{"deploy"}, env: []string{"RENEWED_LINEAGE=" + e.le + "/live/nope", "RENEWED_DOMAINS=a.test"}, code: 3, want: "refused"},
		{name: "no environment", args: []string{"deploy"}, code: 2, want: "RENEWED_LINEAGE"},
		{name: "unknown hook", args: []string{"renew"}, code: 2, want: "unknown"},
		{name: "wait", args: []string{"post", "--wait", "--timeout", "30s"}, code: 4, want: "broken", deployFirst: true},
		{name: "help", args: []string{"--help"}, want: "Exit codes"},
	}
	for _, c := range cases {
		if c.setup != nil {
			c.setup()
		}
		side := func(bin string) (string, int) {
			if c.deployFirst {
				if out, code := run(full, []string{"deploy"}, deploy...); code != 0 {
					t.Fatalf("%s: deploy first: exit %d\n%s", c.name, code, out)
				}
			}
			return run(bin, c.args, c.env...)
		}
		fullOut, fullCode := side(full)
		leanOut, leanCode := side(lean)
		if fullCode != c.code || !strings.Contains(fullOut, c.want) {
			t.Errorf("%s: certbus hook %v: exit %d, want %d with %q\n%s", c.name, c.args, fullCode, c.code, c.want, fullOut)
		}
		if leanCode != fullCode || leanOut != fullOut {
			t.Errorf("%s: certbus-hook %v: exit %d\n%s\nwant as certbus hook: exit %d\n%s", c.name, c.args, leanCode, leanOut, fullCode, fullOut)
		}
	}
	// The common case is certbus-hook's own, not a disguised hand-over:
	// alone in a directory, without certbus beside it, it still delivers;
	// what it must hand over fails, naming the missing binary.
	alone := filepath.Join(t.TempDir(), "certbus-hook")
	if b, err := os.ReadFile(lean); err != nil || os.WriteFile(alone, b, 0o755) != nil {
		t.Fatalf("copy certbus-hook: %v", err)
	}
	if out, code := run(alone, []string{"deploy"}, deploy...); code != 0 || !strings.Contains(out, "deploy event X delivered") {
		t.Errorf("certbus-hook alone, common case: exit %d\n%s", code, out)
	}
	if out, code := run(alone, []string{"post", "--wait"}); code != 1 || !strings.Contains(out, "needs the certbus binary") {
		t.Errorf("certbus-hook alone, --wait: exit %d, want 1 naming the missing certbus\n%s", code, out)
	}
	if left, _ := hooks.ReadSpool(e.state); len(left) != 0 {
		t.Errorf("%d events still spooled after the daemon started (want them replayed)", len(left))
	}
}
