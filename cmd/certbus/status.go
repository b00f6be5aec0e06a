package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/journal"
)

type statusOptions struct {
	g      *globalOptions
	events int
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{g: g}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the apps, their domains and the last events",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return o.run() },
	}
	c.Flags().IntVar(&o.events, "events", 10, "how many recent events to show")
	return c
}

func (o *statusOptions) run() error {
	cfg, err := config.Load(o.g.config)
	if err != nil {
		return withCode(exitError, err, "fix the config (or pass --config)")
	}
	env := &apps.Env{LetsencryptDir: cfg.LetsencryptDir, Reload: cfg.Reload, Log: zap.NewNop()}
	w := tabwriter.NewWriter(o.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tTYPE\tDOMAINS\tRELOAD")
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		s, err := apps.Build(a, env)
		if err != nil {
			fmt.Fprintf(w, "%s\t%s\t-\terror: %v\n", a.Name, a.Type, err)
			continue
		}
		var methods []string
		for _, r := range s.Reloaders {
			methods = append(methods, r.Name())
		}
		if len(methods) == 0 {
			methods = []string{"-"}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, s.Type, strings.Join(s.DomainList(), " "), strings.Join(methods, " -> "))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	j, err := journal.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer j.Close()
	evs, err := j.Recent(o.events)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.g.stdout, "\nLAST EVENTS (%s)\n", cfg.StateDir)
	if len(evs) == 0 {
		fmt.Fprintln(o.g.stdout, "none yet")
		return nil
	}
	w = tabwriter.NewWriter(o.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tEVENT\tOP\tDOMAINS\tRESULTS")
	for _, e := range evs {
		var doms []string
		for d := range e.Domains {
			doms = append(doms, d)
		}
		sort.Strings(doms)
		if len(doms) == 0 {
			doms = []string{"-"}
		}
		var res []string
		for app, r := range e.Results {
			res = append(res, app+"="+r.Status)
		}
		sort.Strings(res)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.ID, e.Operation, strings.Join(doms, " "), strings.Join(res, " "))
	}
	return w.Flush()
}
