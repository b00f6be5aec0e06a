// Command certbus-hook is `certbus hook pre|post|deploy` for certbot's
// renewal-hooks scripts, in a binary that links little more than package
// os and bus/wire (no godbus, no net), so that certbot's hook costs what the
// call costs rather than the start-up of the whole certbus tool (cobra, zap,
// the apps: about a millisecond more per process, see bench/RESULTS.md).
//
// It handles the common case alone: one of pre, post or deploy, the flags
// --bus and --config, certbot's environment, and a daemon that takes the
// event. Everything else (--wait, --help, the lego/acme.sh/dehydrated
// forms, a missing variable, a daemon that refuses or cannot be reached, so
// that the event must be spooled) is handed to `certbus hook` with the same
// arguments by exec: the certbus binary beside this one gives the message,
// the hint, the spool and the exit code. A call handed over after it was
// refused is sent again; a refusal changes nothing and a deploy is
// idempotent. A call that got no answer before the deadline is handed over
// with --spool: spooled, not sent again (that would wait as long).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certbus/certbus/bus/wire"
	"github.com/certbus/certbus/hooks/certbotenv"
)

// timeout is `certbus hook`'s default --timeout.
const timeout = 2 * time.Minute

func main() {
	args := os.Args[1:]
	op, bus, ok := parse(args)
	if !ok {
		handOver(args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	// Connect first: the bus authenticates the connection while this
	// process reads its environment and builds the call.
	conn, err := wire.Dial(ctx, bus)
	domains, envErr := certbotenv.Domains(op, os.Getenv)
	if envErr != nil || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
		// `certbus hook` says what is missing, or falls back to a
		// full client and the spool.
		if conn != nil {
			conn.Close()
		}
		handOver(args)
	}
	var id string
	if err == nil {
		id, err = conn.Notify(op, domains)
		conn.Close()
	}
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		// Trying again would wait as long: `certbus hook --spool`
		// spools the event for the daemon to replay.
		handOver(append([]string{"--spool"}, args...))
	}
	if err != nil {
		handOver(args)
	}
	fmt.Printf("certbus: %s event %s delivered\n", op, id)
}

// parse accepts exactly the common form: --bus/--config (either spelling)
// and one operation.
func parse(args []string) (op, bus string, ok bool) {
	bus = os.Getenv("CERTBUS_BUS")
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--bus" || a == "--config":
			if i+1 == len(args) {
				return "", "", false
			}
			if a == "--bus" {
				bus = args[i+1]
			}
			i++
		case strings.HasPrefix(a, "--bus="):
			bus = strings.TrimPrefix(a, "--bus=")
		case strings.HasPrefix(a, "--config="):
		case (a == "pre" || a == "post" || a == "deploy") && op == "":
			op = a
		default:
			return "", "", false
		}
	}
	return op, bus, op != ""
}

// handOver runs `certbus hook ARGS...` in this process's place.
func handOver(args []string) {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	full := filepath.Join(filepath.Dir(self), "certbus")
	if err == nil {
		err = syscall.Exec(full, append([]string{full, "hook"}, args...), os.Environ())
	}
	fmt.Fprintf(os.Stderr, "certbus: error: cannot run %s hook: %v\n", full, err)
	fmt.Fprintln(os.Stderr, "certbus: hint: certbus-hook needs the certbus binary in its directory; reinstall certbus")
	os.Exit(1)
}
