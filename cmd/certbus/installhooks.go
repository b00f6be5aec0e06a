package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/config"
)

type installHooksOptions struct {
	g      *globalOptions
	binary string
	force  bool
}

func newInstallHooksCmd(g *globalOptions) *cobra.Command {
	o := &installHooksOptions{g: g}
	c := &cobra.Command{
		Use:   "install-hooks",
		Short: "Write the 50-certbus scripts into certbot's renewal-hooks/{pre,post,deploy}/",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return o.run() },
	}
	addLetsencryptDirFlag(c, g)
	c.Flags().StringVar(&o.binary, "binary", "", "certbus binary the scripts exec; certbus-hook in its directory is preferred (default: this one)")
	c.Flags().BoolVar(&o.force, "force", false, "replace a 50-certbus that certbus did not write")
	return c
}

// letsencryptDir is --letsencrypt-dir, else the config's, else the default.
func letsencryptDir(g *globalOptions) string {
	if g.letsencryptDir != "" {
		return g.letsencryptDir
	}
	if cfg, err := config.Load(g.config); err == nil {
		return cfg.LetsencryptDir
	}
	return config.DefaultLetsencryptDir
}

func (o *installHooksOptions) run() error {
	bin := o.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w (use --binary)", err)
		}
		if exe, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("find this binary: %w (use --binary)", err)
		}
		bin = exe
	}
	res, err := hooks.InstallScripts(letsencryptDir(o.g), bin, o.force)
	for _, r := range res {
		fmt.Fprintf(o.g.stdout, "%s: %s\n", r.Path, r.Action)
	}
	if err != nil {
		return err
	}
	return nil
}
