package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	_ "github.com/certbus/certbus/apps/all" // register the built-in app types
	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/internal/systemd"
	"github.com/certbus/certbus/internal/verify"
	"github.com/certbus/certbus/signals"
)

type daemonOptions struct {
	ConfigPath string
	Bus        string
	Log        *zap.Logger
}

// daemon is certbus serve, assembled: bus server -> signal -> app runner.
type daemon struct {
	opts    daemonOptions
	log     *zap.Logger
	cfg     *config.Config
	conn    *dbus.Conn
	signal  *signals.Signal[*event.Event]
	journal *journal.Journal
	server  *bus.Server
	units   *unitControl

	mu     sync.Mutex // guards runner and cfg across SIGHUP
	runner *apps.Runner
}

func newDaemon(o daemonOptions) (*daemon, error) {
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	d := &daemon{opts: o, log: o.Log, cfg: cfg, units: &unitControl{bus: o.Bus}}
	if _, err := d.buildSpecs(cfg); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *daemon) env(cfg *config.Config) *apps.Env {
	return &apps.Env{
		LetsencryptDir: cfg.LetsencryptDir,
		Reload:         cfg.Reload,
		Log:            d.log,
		Units:          d.units.get,
	}
}

func (d *daemon) buildSpecs(cfg *config.Config) ([]*apps.Spec, error) {
	env := d.env(cfg)
	var specs []*apps.Spec
	for i := range cfg.Apps {
		s, err := apps.Build(&cfg.Apps[i], env)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	return specs, nil
}

func policy(cfg *config.Config) *bus.Policy {
	return &bus.Policy{
		Checker:       &certs.Checker{Roots: certs.NewRoots(append([]string{cfg.LetsencryptDir}, cfg.SourceDirs...)...)},
		AllowedGroups: cfg.AllowedGroups,
		AllowedUsers:  cfg.AllowedUsers,
	}
}

// Run starts everything, replays the spool, and blocks until ctx ends.
func (d *daemon) Run(ctx context.Context) error {
	var err error
	if d.journal, err = journal.Open(d.cfg.StateDir); err != nil {
		return err
	}
	if d.conn, err = bus.Connect(d.opts.Bus); err != nil {
		return err
	}
	d.signal = signals.New[*event.Event](0)
	d.signal.Observe(func(id string, r signals.Result) {
		if err := d.journal.AppendResults(id, map[string]journal.EntryOutcome{r.Subscriber: {Status: string(r.Status), Message: r.Message}}); err != nil {
			d.log.Warn("journal result", zap.String("event", id), zap.Error(err))
		}
	})
	specs, err := d.buildSpecs(d.cfg)
	if err != nil {
		return err
	}
	if d.runner, err = apps.NewRunner(d.signal, specs, d.runnerOptions()); err != nil {
		return err
	}
	d.server = bus.NewServer(d.conn, d.signal, d.journal, policy(d.cfg), d.log.Named("bus"))
	if err := d.server.Start(); err != nil {
		return err
	}
	d.log.Info("serving", zap.String("name", bus.Name), zap.String("bus", d.opts.Bus),
		zap.String("config", d.opts.ConfigPath), zap.Int("apps", len(specs)))
	d.replaySpool()
	<-ctx.Done()
	return nil
}

func (d *daemon) runnerOptions() apps.Options {
	return apps.Options{
		Log:    d.log,
		Verify: verifyLeaf,
	}
}

// replaySpool takes the events hooks spooled while the daemon was away, in
// order, deleting each file once its event is journaled.
func (d *daemon) replaySpool() {
	evs, errs := hooks.ReadSpool(d.cfg.StateDir)
	for _, err := range errs {
		d.log.Error("spool", zap.Error(err))
	}
	for _, s := range evs {
		ev, err := d.server.Accept(event.Operation(s.Operation), s.Domains, true)
		if err != nil {
			// A spooled event the daemon refuses now (an expired or
			// replaced certificate) would be refused forever: set it
			// aside like a corrupt one.
			d.log.Error("spooled event refused; moved aside", zap.String("file", s.File), zap.Error(err))
			hooks.SetAside(s.File)
			continue
		}
		if err := os.Remove(s.File); err != nil {
			d.log.Warn("remove replayed spool file", zap.String("file", s.File), zap.Error(err))
		}
		d.log.Info("replayed spooled event", zap.String("event", ev.ID), zap.String("file", s.File))
	}
}

// Reload re-reads the config (SIGHUP). A bad config is refused and logged
// with its file and line; the running one stays.
func (d *daemon) Reload() {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err == nil && cfg.StateDir != d.cfg.StateDir {
		err = fmt.Errorf("%s: state_dir changed from %s to %s: restart the daemon for that", d.opts.ConfigPath, d.cfg.StateDir, cfg.StateDir)
	}
	var specs []*apps.Spec
	if err == nil {
		specs, err = d.buildSpecs(cfg)
	}
	if err != nil {
		d.log.Error("config reload refused; keeping the running config", zap.Error(err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.runner
	// Pending reloads of the old apps run now rather than being lost.
	old.Flush(context.Background())
	old.Close()
	r, err := apps.NewRunner(d.signal, specs, d.runnerOptions())
	if err != nil {
		d.log.Error("config reload failed", zap.Error(err))
		return
	}
	d.runner, d.cfg = r, cfg
	d.server.SetPolicy(policy(cfg))
	d.log.Info("config reloaded", zap.Int("apps", len(specs)))
}

// Shutdown stops taking events, lets queued events finish, runs pending
// reloads, and closes the journal.
func (d *daemon) Shutdown(ctx context.Context) error {
	if d.server != nil {
		d.server.Stop()
	}
	if d.signal != nil {
		if err := d.signal.Close(ctx); err != nil {
			d.log.Warn("events still running at shutdown", zap.Error(err))
		}
	}
	d.mu.Lock()
	if d.runner != nil {
		d.runner.Flush(ctx)
		d.runner.Close()
	}
	d.mu.Unlock()
	if d.journal != nil {
		d.journal.Close()
	}
	if d.conn != nil {
		d.conn.Close()
	}
	d.units.close()
	d.log.Info("stopped")
	return nil
}

// unitControl connects to systemd on first use and shares the connection.
type unitControl struct {
	bus string
	mu  sync.Mutex
	m   *systemd.Manager
}

func (u *unitControl) get(ctx context.Context) (apps.UnitController, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		m, err := systemd.Connect(ctx)
		if err != nil {
			return nil, err
		}
		u.m = m
	}
	return unitAdapter{u.m}, nil
}

func (u *unitControl) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m != nil {
		u.m.Close()
		u.m = nil
	}
}

type unitAdapter struct{ m *systemd.Manager }

func (a unitAdapter) Run(ctx context.Context, unit, mode string) error {
	m, err := systemd.ParseMode(mode)
	if err != nil {
		return err
	}
	return a.m.Run(ctx, unit, m)
}

func verifyLeaf(ctx context.Context, v apps.VerifySpec, serverName, fingerprint string) error {
	return verify.Expect(ctx, verify.Target{Address: v.Address, ServerName: serverName, StartTLS: v.StartTLS}, fingerprint, 200e6)
}
