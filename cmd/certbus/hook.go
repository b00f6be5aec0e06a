package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/event"
)

type hookOptions struct {
	g       *globalOptions
	wait    bool
	timeout time.Duration
	// spool is certbus-hook's hand-over after its call got no answer
	// before the deadline: spool without trying again (hidden).
	spool bool
}

func newHookCmd(g *globalOptions) *cobra.Command {
	o := &hookOptions{g: g}
	c := &cobra.Command{
		Use:   "hook pre|post|deploy",
		Short: "ACME client hook: tell the daemon about a renewal (certbot, lego, acme.sh, dehydrated)",
		Long: `Run by certbot from renewal-hooks/{pre,post,deploy}/50-certbus (see install-hooks).
deploy reads RENEWED_LINEAGE and RENEWED_DOMAINS; pre and post carry no domains.
Other ACME clients: see ` + "`certbus hook lego|acme.sh|dehydrated --help`" + `.

Exit codes: 0 delivered (or spooled for the daemon, with a warning);
2 usage or missing environment (nothing sent); 3 refused by the daemon;
4 with --wait, an app failed; 1 anything else.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c.Context(), args[0]) },
	}
	// Persistent: the client forms (hook lego, ...) take them too.
	c.PersistentFlags().BoolVar(&o.wait, "wait", false, "wait for the apps; exit 4 if any failed")
	c.PersistentFlags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long (and spool the event)")
	c.PersistentFlags().BoolVar(&o.spool, "spool", false, "spool the event without trying the daemon")
	_ = c.PersistentFlags().MarkHidden("spool")
	c.AddCommand(newHookClientCmds(o)...)
	return c
}

func (o *hookOptions) run(ctx context.Context, kind string) error {
	domains, err := hooks.Certbot(kind, os.Getenv)
	if err != nil {
		hint := ""
		if !event.Operation(kind).Valid() {
			hint = "other ACME clients: certbus hook lego | acme.sh | dehydrated ARGS..."
		}
		return withCode(exitUsage, err, hint)
	}
	return o.send(ctx, kind, domains)
}

// stateDir finds the spool's home from the config; a missing or broken
// config falls back to the default rather than losing the event.
func (o *hookOptions) stateDir() (string, error) {
	cfg, err := config.LoadMain(o.g.config)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return config.DefaultStateDir, nil
		}
		return config.DefaultStateDir, err
	}
	return cfg.StateDir, nil
}

func (o *hookOptions) send(ctx context.Context, kind string, domains hooks.Domains) error {
	var cfgErr error
	stateDir := func() string {
		var dir string
		dir, cfgErr = o.stateDir()
		return dir
	}
	so := hooks.SendOptions{Bus: o.g.bus, StateDir: stateDir, Wait: o.wait, Timeout: o.timeout}
	if o.spool {
		so.SpoolNow = errors.New("certbus-hook got no answer from the daemon before its deadline")
	}
	d, err := hooks.Send(ctx, so, kind, domains)
	var rej *bus.RejectedError
	switch {
	case err != nil && d != nil:
		// Delivered; what failed is --wait (whatever its error).
		return withCode(exitError, fmt.Errorf("%s event %s delivered, but: %w", kind, d.EventID, err), "")
	case errors.As(err, &rej):
		hint := "check the certificate files and `journalctl -u certbus`"
		if rej.Name == bus.ErrAccessDenied {
			hint = "run the hook as root, or add the user to allowed_groups/allowed_users in the certbus config"
		}
		return withCode(exitRejected, fmt.Errorf("the daemon refused the %s event: %s", kind, rej.Message), hint)
	case err != nil:
		return withCode(exitError, fmt.Errorf("%s event not delivered: %w", kind, err), "is certbus.service running? `systemctl status certbus`")
	}
	if d.Spooled != "" {
		fmt.Fprintf(o.g.stderr, "certbus: warning: %v\n", d.Reason)
		if cfgErr != nil {
			fmt.Fprintf(o.g.stderr, "certbus: warning: config: %v (spooled under the default state dir)\n", cfgErr)
		}
		fmt.Fprintf(o.g.stderr, "certbus: warning: %s event spooled to %s; the daemon replays it within a minute when it runs, else when it starts (systemctl start certbus)\n", kind, d.Spooled)
		return nil
	}
	fmt.Fprintf(o.g.stdout, "certbus: %s event %s delivered\n", kind, d.EventID)
	for _, r := range d.Results {
		fmt.Fprintf(o.g.stdout, "certbus: %s: %s: %s\n", r.App, r.Status, r.Message)
	}
	if failed := d.Failed(); len(failed) > 0 {
		var names []string
		for _, r := range failed {
			names = append(names, r.App)
		}
		return withCode(exitAppFail, fmt.Errorf("app(s) failed for event %s: %s", d.EventID, strings.Join(names, ", ")),
			"see the messages above and `journalctl -u certbus`")
	}
	return nil
}
