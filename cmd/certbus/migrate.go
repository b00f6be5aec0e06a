package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/certbus/certbus/migrate"
)

type migrateOptions struct {
	g      *globalOptions
	dryRun bool
	all    bool
}

func newMigrateCmd(g *globalOptions) *cobra.Command {
	o := &migrateOptions{g: g}
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Remove legacy per-domain hooks from renewal configs",
		Long: `Remove the per-domain hooks that older setups wrote into
<letsencrypt-dir>/renewal/*.conf, now that certbus's directory hooks run on
every renewal: FreedomBox's "letsencrypt run_*_hooks --domain D" dispatcher
and commands that only call certbus or org.certbus.Dispatcher1. Other hooks
are kept and listed, unless --all.

Only the hook lines change; every other byte stays. Each edited file keeps
its mode and owner, and its original is kept as <name>.conf.certbus-bak.
A file certbot could not parse is reported and left untouched.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return o.run() },
	}
	addLetsencryptDirFlag(c, g)
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "print a unified diff per file and change nothing")
	c.Flags().BoolVar(&o.all, "all", false, "remove every hook, not only legacy ones")
	return c
}

func (o *migrateOptions) run() error {
	dir := letsencryptDir(o.g)
	r, err := migrate.Run(migrate.Options{LetsencryptDir: dir, All: o.all, DryRun: o.dryRun})
	if errors.Is(err, migrate.ErrCertbotRunning) {
		return withCode(exitError, err, "run certbus migrate again once certbot has finished")
	}
	if err != nil {
		return withCode(exitError, err, "--letsencrypt-dir must name certbot's config directory, the one holding renewal/")
	}
	out, errOut := o.g.stdout, o.g.stderr
	if len(r.Files) == 0 {
		fmt.Fprintf(out, "no renewal configs in %s\n", r.RenewalDir)
		return nil
	}
	kept := 0
	if o.dryRun {
		for _, f := range r.Files {
			if f.Err != nil {
				fmt.Fprintf(errOut, "certbus: error: %v\n", f.Err)
			}
			fmt.Fprint(out, f.Diff)
			for _, h := range f.Kept {
				fmt.Fprintf(errOut, "certbus: hint: keeping %s:%d: %s = %q\n", f.Path, h.Line, h.Key, h.Command)
				kept++
			}
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "FILE\tHOOKS REMOVED\tHOOKS KEPT\tERROR")
		for _, f := range r.Files {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", filepath.Base(f.Path), hookList(f.Removed), hookList(f.Kept), fileError(f.Err))
			kept += len(f.Kept)
		}
		tw.Flush()
	}
	if kept > 0 {
		what := "hooks that do not look like per-domain dispatchers were kept"
		if kept == 1 {
			what = "hook that does not look like a per-domain dispatcher was kept"
		}
		fmt.Fprintf(errOut, "certbus: hint: %d %s; remove what the certbus apps cover by hand, or run again with --all\n", kept, what)
	}
	if failed := r.Failed(); len(failed) > 0 {
		return withCode(exitError,
			fmt.Errorf("%d of %d renewal configs left untouched because of errors", len(failed), len(r.Files)),
			"fix the files named above and run certbus migrate again; the other files were processed")
	}
	return nil
}

func hookList(hs []migrate.Hook) string {
	if len(hs) == 0 {
		return "-"
	}
	keys := make([]string, len(hs))
	for i, h := range hs {
		keys[i] = h.Key
	}
	return strings.Join(keys, ",")
}

// fileError shortens an error for the table, whose FILE column already
// names the file.
func fileError(err error) string {
	if err == nil {
		return "-"
	}
	var pe *migrate.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("line %d: %s", pe.Line, pe.Msg)
	}
	return err.Error()
}
