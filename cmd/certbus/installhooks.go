package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newInstallHooksCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use: "install-hooks",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("install-hooks is not implemented yet")
		},
	}
}
