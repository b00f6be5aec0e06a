package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use: "status",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("status is not implemented yet")
		},
	}
}
