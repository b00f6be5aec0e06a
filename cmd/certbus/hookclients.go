package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/event"
)

// newHookClientCmds makes the forms of `certbus hook` for ACME clients
// other than certbot. They share hook's flags, its delivery (spool when the
// daemon is away) and its exit codes.
func newHookClientCmds(o *hookOptions) []*cobra.Command {
	lego := &cobra.Command{
		Use:   "lego",
		Short: "lego hook: --run-hook / --renew-hook \"certbus hook lego\"",
		Long: `Run by lego after it obtained or renewed a certificate:

  lego --path /var/lib/lego ... run   --run-hook   "certbus hook lego"
  lego --path /var/lib/lego ... renew --renew-hook "certbus hook lego"

lego splits the command on white space and runs it without a shell. Reads
LEGO_CERT_PATH, LEGO_CERT_KEY_PATH, LEGO_ISSUER_CERT_PATH, LEGO_CERT_DOMAIN;
the event's domains are the certificate's names. lego has no pre/post hooks:
the daemon reloads each app once, a debounce after the last certificate.
lego's store must be listed in source_dirs of the certbus config.` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return o.runClient(c, "lego", event.Deploy, func() (hooks.Domains, error) { return hooks.Lego(os.Getenv) })
		},
	}
	acmesh := &cobra.Command{
		Use:   "acme.sh",
		Short: "acme.sh hook: --reloadcmd \"certbus hook acme.sh\"",
		Long: `Run by acme.sh after it installed a certificate:

  acme.sh --install-cert -d example.org --reloadcmd "certbus hook acme.sh"

Reads CERT_PATH, CERT_KEY_PATH, CERT_FULLCHAIN_PATH, CA_CERT_PATH and Le_Domain;
the event's domains are the certificate's names. acme.sh runs it once per
certificate: the daemon debounces the reloads. acme.sh's home (e.g.
/root/.acme.sh) must be listed in source_dirs of the certbus config.` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return o.runClient(c, "acme.sh", event.Deploy, func() (hooks.Domains, error) { return hooks.AcmeSh(os.Getenv) })
		},
	}
	dehydrated := &cobra.Command{
		Use:   "dehydrated HANDLER ARGS...",
		Short: "dehydrated hook: HOOK=a script running `exec certbus hook dehydrated \"$@\"`",
		Long: `Run by dehydrated's hook script with dehydrated's arguments, e.g. in
/etc/dehydrated/hook.sh:

  #!/bin/sh
  exec certbus hook dehydrated "$@"

deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP is a
deploy (the certificate's names), startup_hook a pre, exit_hook a post, so a
dehydrated run reloads each app once. Every other handler exits 0 silently,
as dehydrated requires. dehydrated's BASEDIR (e.g. /var/lib/dehydrated) must
be listed in source_dirs of the certbus config. Flags go before HANDLER.` + exitCodesHelp,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			op, domains, err := hooks.Dehydrated(args)
			if err == nil && op == "" {
				return nil // not ours: dehydrated reads generate_csr's stdout
			}
			return o.runClient(c, "dehydrated", op, func() (hooks.Domains, error) { return domains, err })
		},
	}
	// dehydrated's own arguments (a response body, a reason) must never be
	// taken for flags.
	dehydrated.Flags().SetInterspersed(false)
	return []*cobra.Command{lego, acmesh, dehydrated}
}

const exitCodesHelp = `

Exit codes: 0 delivered (or spooled for the daemon, with a warning);
2 usage or missing environment (nothing sent); 3 refused by the daemon;
4 with --wait, an app failed; 1 anything else.`

// runClient builds a client's event and sends it like `hook deploy` does.
func (o *hookOptions) runClient(c *cobra.Command, client string, op event.Operation, build func() (hooks.Domains, error)) error {
	domains, err := build()
	if err != nil {
		return withCode(exitUsage, err, "see `certbus hook "+client+" --help`")
	}
	return o.send(c.Context(), string(op), domains)
}
