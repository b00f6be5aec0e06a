package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newServeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use: "serve",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("serve is not implemented yet")
		},
	}
}
