package testutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// recorder stands in for a test so Need and WaitFor can be watched failing
// or skipping. Fatalf and Skipf end the goroutine, as the real ones do.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// record runs f with a recorder on its own goroutine and returns what it
// recorded.
func record(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestNeed(t *testing.T) {
	// A PATH without /usr/sbin: Need must still find groupadd there, and
	// must not find pebble (in /usr/bin).
	t.Setenv("PATH", t.TempDir())
	tests := []struct {
		name  string
		ci    string
		tools []string
		fatal string // substrings of the failure, or of the skip when ci is ""
		skip  string
	}{
		{name: "sbin tool found", tools: []string{"groupadd"}},
		{name: "absolute path found", tools: []string{"/bin/sh"}},
		{name: "missing skips", tools: []string{"groupadd", "pebble"}, skip: "pebble not found on PATH or in /usr/local/sbin, /usr/sbin, /sbin: install it with `apt-get install pebble`"},
		{name: "missing fails in CI", ci: "1", tools: []string{"pebble"}, fatal: "apt-get install pebble` (CI is set"},
		{name: "package named by caller", tools: []string{"no-such-tool-certbus=certbus-extra"}, skip: "no-such-tool-certbus not found on PATH or in /usr/local/sbin, /usr/sbin, /sbin: install it with `apt-get install certbus-extra`"},
		{name: "unknown package", ci: "true", tools: []string{"no-such-tool-certbus"}, fatal: "`apt-file search bin/no-such-tool-certbus`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := record(t, func(tb testing.TB) { Need(tb, tt.tools...) })
			if tt.fatal == "" && r.fatal != "" || !strings.Contains(r.fatal, tt.fatal) {
				t.Errorf("fatal = %q, want %q", r.fatal, tt.fatal)
			}
			if tt.skip == "" && r.skip != "" || !strings.Contains(r.skip, tt.skip) {
				t.Errorf("skip = %q, want %q", r.skip, tt.skip)
			}
		})
	}
}

func TestNeedRoot(t *testing.T) {
	t.Setenv("CI", "1")
	r := record(t, NeedRoot)
	if os.Geteuid() == 0 {
		if r.fatal != "" || r.skip != "" {
			t.Errorf("as root: fatal %q, skip %q", r.fatal, r.skip)
		}
	} else if !strings.Contains(r.fatal, "must run as root") {
		t.Errorf("not root, CI set: fatal = %q", r.fatal)
	}
}

func TestLookPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if p, err := LookPath("groupadd"); err != nil || !filepath.IsAbs(p) {
		t.Errorf("LookPath(groupadd) = %q, %v; want an absolute path in an sbin dir", p, err)
	}
	if p, err := LookPath("sh"); err == nil {
		t.Errorf("LookPath(sh) with an empty PATH = %q, want an error", p)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.HasPrefix(string(b), "module github.com/certbus/certbus\n") {
		t.Fatalf("RepoRoot = %s, whose go.mod is not certbus's (%v)", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, ShippedPolicy)); err != nil {
		t.Errorf("shipped policy: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("FreePort = %d, not free: %v", port, err)
	}
	l.Close()
}

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, 5*time.Second, func() bool { n++; return n == 3 }, "third call")
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}

	start := time.Now()
	r := record(t, func(tb testing.TB) { WaitFor(tb, 100*time.Millisecond, func() bool { return false }, "never") })
	if want := "timed out after 100ms waiting for never"; r.fatal != want {
		t.Errorf("fatal = %q, want %q", r.fatal, want)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

func TestAddressEscape(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/TestX123/001/bus.socket": "/tmp/TestX123/001/bus.socket",
		"/tmp/Test a=b,c/bus.socket":   "/tmp/Test%20a%3db%2cc/bus.socket",
		`/tmp/x\y*z_-.`:                `/tmp/x\y*z_-.`,
	} {
		if got := addressEscape(in); got != want {
			t.Errorf("addressEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
