package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of DESIGN section 5.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRejected = 3
	exitAppFail  = 4
)

// exitError carries an exit code and an optional hint up to run.
type cliError struct {
	code int
	err  error
	hint string
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func withCode(code int, err error, hint string) error {
	return &cliError{code: code, err: err, hint: hint}
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	bus            string
	config         string
	letsencryptDir string
	stdout, stderr io.Writer
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// extraCommands are added by files built only with a build tag.
var extraCommands []func(*globalOptions) *cobra.Command

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "certbus",
		Short:         "Deliver renewed TLS certificates to every service on the host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.bus, "bus", envOr("CERTBUS_BUS", "system"), "D-Bus bus: system, session or an address (env CERTBUS_BUS)")
	pf.StringVar(&g.config, "config", envOr("CERTBUS_CONFIG", "/etc/certbus/certbus.yaml"), "config file (env CERTBUS_CONFIG)")
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return withCode(exitUsage, err, "see `"+c.CommandPath()+" --help`")
	})
	root.AddCommand(
		newServeCmd(g),
		newHookCmd(g),
		newInstallHooksCmd(g),
		newMigrateCmd(g),
		newStatusCmd(g),
		newVersionCmd(g),
	)
	for _, c := range extraCommands {
		root.AddCommand(c(g))
	}
	return root
}

// addLetsencryptDirFlag adds --letsencrypt-dir to the commands it applies to.
func addLetsencryptDirFlag(c *cobra.Command, g *globalOptions) {
	c.Flags().StringVar(&g.letsencryptDir, "letsencrypt-dir", "", "certbot's config directory (default: letsencrypt_dir from the config, else /etc/letsencrypt)")
}

// run executes the CLI and returns the process exit code. It is the only
// place that prints errors.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	code := exitError
	var ce *cliError
	if errors.As(err, &ce) {
		code = ce.code
	} else if isUsageError(err) {
		code = exitUsage
	}
	fmt.Fprintf(stderr, "certbus: error: %v\n", err)
	if ce != nil && ce.hint != "" {
		fmt.Fprintf(stderr, "certbus: hint: %s\n", ce.hint)
	}
	return code
}

// isUsageError recognises cobra's own argument errors (unknown command,
// wrong number of arguments), which it returns as plain errors.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
