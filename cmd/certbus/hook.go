package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newHookCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use: "hook",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("hook is not implemented yet")
		},
	}
}
