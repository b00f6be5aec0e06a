package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// certbusBin is a real certbus binary built once for the tests that need a
// separate process (the daemon, hooks that certbot execs).
var certbusBin string

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"certbus": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// buildBinary builds cmd/certbus (and cmd/certbus-hook beside it) once per
// test binary; the result lives
// in a directory removed when the process exits... by the OS's temp
// cleaning, since TestMain cannot defer past testscript.Main's os.Exit.
func buildBinary(t testing.TB) string {
	t.Helper()
	if certbusBin != "" {
		return certbusBin
	}
	dir, err := os.MkdirTemp("", "certbus-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "certbus")
	// certbus-hook beside it, as installed: the hook scripts run it.
	for _, b := range [][]string{{bin, "."}, {filepath.Join(dir, "certbus-hook"), "../certbus-hook"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	// World-executable path so setpriv'd callers can run it too.
	os.Chmod(dir, 0o755)
	certbusBin = bin
	return bin
}

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(e *testscript.Env) error {
			// Nothing may reach a real system bus from a script test.
			e.Setenv("CERTBUS_BUS", "unix:path="+filepath.Join(e.WorkDir, "no-bus"))
			e.Setenv("CERTBUS_CONFIG", filepath.Join(e.WorkDir, "certbus.yaml"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// exits N prog args...: run prog, demand exit status N.
			"exits": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exits N prog args...")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exits: bad status %q", args[0])
				}
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("exits: %v", err)
				}
				if got != want {
					ts.Fatalf("exit status %d, want %d", got, want)
				}
			},
		},
	})
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
