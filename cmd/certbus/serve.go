package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/certbus/certbus/bus"
)

type serveOptions struct {
	g        *globalOptions
	logLevel string
}

func newServeCmd(g *globalOptions) *cobra.Command {
	o := &serveOptions{g: g}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the certbus daemon (owns org.certbus.Dispatcher1 on the bus)",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return o.run(c.Context()) },
	}
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}

// defaultMemoryLimit is the daemon's soft heap limit unless GOMEMLIMIT says
// otherwise: it holds a few certificates and results at a time, and a
// renewal storm's garbage should not grow the heap of a daemon that idles
// for months.
const defaultMemoryLimit = 20 << 20

func (o *serveOptions) run(ctx context.Context) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	log, err := newLogger(o.g.stderr, o.logLevel)
	if err != nil {
		return withCode(exitUsage, err, "")
	}
	defer func() { _ = log.Sync() }()
	d, err := newDaemon(daemonOptions{ConfigPath: o.g.config, Bus: o.g.bus, Log: log})
	if err != nil {
		return withCode(exitError, err, "fix the config and run `certbus serve` again")
	}
	// OS signals become context cancellation (SIGTERM, SIGINT) and config
	// reloads (SIGHUP); nothing below this command sees a signal.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.RequestReload()
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		// Close what Run opened before it failed: the journal is cut
		// back to its entries (a crash's padding included), the bus
		// connection closed.
		down, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.Shutdown(down)
		cancel()
		if errors.Is(err, bus.ErrNotPrimaryOwner) {
			return withCode(exitError, err, "another certbus serve owns the name; stop it first (systemctl stop certbus)")
		}
		return err
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d.Shutdown(shutdown)
}
