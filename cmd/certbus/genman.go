//go:build genman

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// gen-man is built only with -tags genman (scripts/build-deb.sh does): the
// shipped binary is also the hook certbot runs, and cobra/doc's markdown
// renderer would only add to its start-up.
func init() { extraCommands = append(extraCommands, newGenManCmd) }

// newGenManCmd writes the man pages at build time (make deb); hidden.
func newGenManCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := c.Root()
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Title: "CERTBUS", Section: "1", Source: "certbus " + version, Manual: "certbus manual"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("generate man pages: %w", err)
			}
			return nil
		},
	}
}
