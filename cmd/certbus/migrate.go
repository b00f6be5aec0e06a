package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newMigrateCmd is a placeholder until the migrate issue lands.
func newMigrateCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Remove legacy per-domain hooks from renewal configs",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("migrate is not implemented yet")
		},
	}
	addLetsencryptDirFlag(c, g)
	return c
}
