package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	_ "github.com/certbus/certbus/apps/all" // register the built-in app types
	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/applied"
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
	applied *applied.Store
	specs   []*apps.Spec // built once at start; the runner owns them after

	mu     sync.Mutex // guards runner and cfg across SIGHUP
	runner *apps.Runner

	// reloads carries SIGHUP to Run, which reloads on its own goroutine
	// once its start (spool replay, catch-up: they read d.cfg unlocked)
	// is done: one at a time, the config read last applied last, and
	// never beside a spool replay.
	reloads chan struct{}

	// earlyApplied is the applied state, read beside the config's
	// drop-ins (with many apps and lineages the two are most of a
	// start-up, and neither needs the other); nil: Run reads it.
	earlyApplied chan openedApplied
}

type openedApplied struct {
	stateDir string
	store    *applied.Store
	err      error
}

func newDaemon(o daemonOptions) (*daemon, error) {
	var early chan openedApplied
	if main, err := config.LoadMain(o.ConfigPath); err == nil {
		early = make(chan openedApplied, 1)
		go func() {
			s, err := applied.Open(main.StateDir)
			early <- openedApplied{main.StateDir, s, err}
		}()
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	d := &daemon{opts: o, log: o.Log, cfg: cfg, units: &unitControl{bus: o.Bus}, earlyApplied: early, reloads: make(chan struct{}, 1)}
	if d.specs, err = d.buildSpecs(cfg); err != nil {
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
	if d.earlyApplied != nil {
		if r := <-d.earlyApplied; r.stateDir == d.cfg.StateDir {
			d.applied, err = r.store, r.err
		}
		d.earlyApplied = nil
	}
	if d.applied == nil && err == nil {
		d.applied, err = applied.Open(d.cfg.StateDir)
	}
	if err != nil {
		return err
	}
	if d.conn, err = bus.Connect(d.opts.Bus); err != nil {
		return err
	}
	d.signal = signals.New[*event.Event](0)
	d.signal.Observe(func(id string, r signals.Result) {
		// Results are written without a sync of their own: the event is
		// already durable, and the next event's sync makes them so too.
		if err := d.journal.AppendResults(id, map[string]journal.EntryOutcome{r.Subscriber: {Status: string(r.Status), Message: r.Message}}); err != nil {
			d.log.Warn("journal result", zap.String("event", id), zap.Error(err))
		}
	})
	specs := d.specs
	if d.runner, err = apps.NewRunner(d.signal, specs, d.runnerOptions()); err != nil {
		return err
	}
	d.server = bus.NewServer(d.conn, d.signal, d.journal, policy(d.cfg), d.log.Named("bus"))
	d.server.History = d.history
	if err := d.server.Start(); err != nil {
		return err
	}
	d.log.Info("serving", zap.String("name", bus.Name), zap.String("bus", d.opts.Bus),
		zap.String("config", d.opts.ConfigPath), zap.Int("apps", len(specs)))
	// Spool first, then catch-up: the spooled run's reloads are recorded
	// before the lineages are compared, so nothing is done twice.
	last := d.replaySpool()
	d.waitFor(ctx, last)
	d.catchUp(ctx)
	// A hook spools while the daemon runs when it found no daemon just
	// before this one took the name, or got no answer in time from a
	// daemon that was stuck for a while: look again now and then (and at
	// SIGHUP), so that such an event waits a minute, not until a restart.
	tick := time.NewTicker(spoolRescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			d.replaySpool()
		case <-d.reloads:
			d.Reload()
		}
	}
}

// spoolRescan is how often a running daemon looks for spooled events.
const spoolRescan = time.Minute

// sourceDeploy is the newest deploy of a domain from outside letsencrypt_dir.
type sourceDeploy struct {
	domain, fingerprint string
	paths               map[string]string
}

// sourceDeploys lists the domains whose last journaled deploy came from
// outside letsencrypt_dir, with the files it named and the certificate
// they hold now.
func (d *daemon) sourceDeploys() []sourceDeploy {
	if len(d.cfg.SourceDirs) == 0 {
		return nil
	}
	entries, err := d.journal.Recent(journalHistory)
	if err != nil {
		d.log.Warn("catch-up: read journal", zap.Error(err))
		return nil
	}
	le := filepath.Clean(d.cfg.LetsencryptDir) + string(filepath.Separator)
	// The newest deploy of each domain, wherever it came from: a domain
	// that moved from acme.sh to certbot has certbot's deploy last, and
	// its old source files must not be caught up to (every restart would
	// swap the two certificates).
	latest := map[string]map[string]string{}
	for _, e := range entries {
		if e.Operation != event.Deploy {
			continue
		}
		for dom, ed := range e.Domains {
			latest[dom] = ed.Paths
		}
	}
	var out []sourceDeploy
	for dom, paths := range latest {
		if p := paths[event.KeyCertificate]; p == "" || strings.HasPrefix(p, le) {
			continue // certbot's: the lineage scan covers it
		}
		fp, _, err := hooks.CertFile(paths[event.KeyCertificate])
		if err != nil {
			d.log.Warn("catch-up: certificate from a source dir", zap.String("domain", dom), zap.Error(err))
			continue
		}
		out = append(out, sourceDeploy{domain: dom, fingerprint: fp, paths: paths})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].domain < out[j].domain })
	return out
}

// waitFor waits (bounded) until event id is processed by every app.
func (d *daemon) waitFor(ctx context.Context, id string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Duration(d.cfg.Reload.Timeout))
	defer cancel()
	_, _ = d.signal.Wait(ctx, id)
}

// history answers Wait for an event from before a restart, from the journal.
func (d *daemon) history(id string) ([]bus.Result, bool) {
	entries, err := d.journal.Recent(journalHistory)
	if err != nil {
		return nil, false
	}
	for _, e := range entries {
		if e.ID != id {
			continue
		}
		var out []bus.Result
		for app, r := range e.Results {
			out = append(out, bus.Result{App: app, Status: r.Status, Message: r.Message})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
		return out, true
	}
	return nil, false
}

// journalHistory is how many journaled events Wait can still answer for.
const journalHistory = 2000

// catchUp compares every lineage with what each app last applied and
// replays, as one pre..post run, the deploys the apps missed while the
// daemon was down: one reload per app.
func (d *daemon) catchUp(ctx context.Context) {
	start := time.Now()
	// certbot's layout only: source_dirs hold other clients' stores, whose
	// renewals reach certbus through their own hooks.
	lineages, errs := hooks.ScanLineages(d.cfg.LetsencryptDir)
	for _, err := range errs {
		d.log.Warn("catch-up", zap.Error(err))
	}
	d.mu.Lock()
	specs := d.runner.Specs()
	d.mu.Unlock()
	type deploy struct {
		dir   string
		names []string
		paths map[string]map[string]string // instead of dir+names
		apps  []string
	}
	var todo []deploy
	index := apps.NewIndex(specs)
	for _, l := range lineages {
		dep := deploy{dir: l.Dir}
		names := map[string]bool{}
		missedBy := map[string]bool{}
		for _, n := range l.Names {
			for _, s := range index.Lookup(n) {
				if r, ok := d.applied.Get(s.Name, n); !ok || r.Fingerprint != l.Fingerprint {
					names[n] = true
					if !missedBy[s.Name] {
						missedBy[s.Name] = true
						dep.apps = append(dep.apps, s.Name)
					}
				}
			}
		}
		if len(dep.apps) == 0 {
			continue
		}
		for n := range names {
			dep.names = append(dep.names, n)
		}
		sort.Strings(dep.names)
		todo = append(todo, dep)
	}
	// Other clients (lego, acme.sh, dehydrated) keep their own stores under
	// source_dirs and renew in place: the journal remembers the files their
	// hooks last handed over, and those are read again now.
	for _, src := range d.sourceDeploys() {
		dep := deploy{}
		for _, s := range index.Lookup(src.domain) {
			if r, ok := d.applied.Get(s.Name, src.domain); !ok || r.Fingerprint != src.fingerprint {
				dep.apps = append(dep.apps, s.Name)
			}
		}
		if len(dep.apps) > 0 {
			dep.paths = map[string]map[string]string{src.domain: src.paths}
			todo = append(todo, dep)
		}
	}
	d.log.Info("catch-up scan", zap.Int("lineages", len(lineages)), zap.Int("missed", len(todo)), zap.Duration("took", time.Since(start)))
	if len(todo) == 0 || ctx.Err() != nil {
		return
	}
	// No pre/post of its own: the deploys debounce into one reload per
	// app, or, when certbot's pre is already open (the daemon was started
	// by bus activation from certbot's pre hook), join that run and reload
	// once at its post. A post of ours must never end certbot's run.
	for _, dep := range todo {
		o := bus.AcceptOptions{Replay: true, Only: dep.apps}
		doms := dep.paths
		if doms == nil {
			doms = hooks.LineageDomains(dep.dir, dep.names)
		}
		if _, err := d.server.Accept(event.Deploy, doms, o); err != nil {
			d.log.Error("catch-up deploy refused", zap.String("lineage", dep.dir), zap.Error(err))
		}
	}
}

func (d *daemon) runnerOptions() apps.Options {
	return apps.Options{
		Log:      d.log,
		Verify:   verifyLeaf,
		Recorder: recorder{d.applied},
	}
}

// replaySpool takes the events hooks spooled while the daemon was away, in
// order, deleting each file once its event is journaled.
// It returns the id of the last event replayed.
func (d *daemon) replaySpool() string {
	d.mu.Lock()
	stateDir := d.cfg.StateDir
	d.mu.Unlock()
	evs, errs := hooks.ReadSpool(stateDir)
	for _, err := range errs {
		d.log.Error("spool", zap.Error(err))
	}
	last := ""
	for _, s := range evs {
		ev, err := d.server.Accept(event.Operation(s.Operation), s.Domains, bus.AcceptOptions{Replay: true})
		if certs.IsInvalid(err) {
			// A spooled event the daemon refuses now (an expired or
			// replaced certificate) would be refused forever: set it
			// aside like a corrupt one.
			d.log.Error("spooled event refused; moved aside", zap.String("file", s.File), zap.Error(err))
			hooks.SetAside(s.File)
			continue
		}
		if err != nil {
			// Not the event's fault (the journal could not be written,
			// a file could not be read): keep it, and the ones after
			// it, for the next look.
			d.log.Error("spool replay stopped; the events stay spooled and are tried again in a minute (fix the error, or `systemctl reload certbus` to retry now)",
				zap.String("file", s.File), zap.Error(err))
			return last
		}
		if err := os.Remove(s.File); err != nil {
			d.log.Warn("remove replayed spool file", zap.String("file", s.File), zap.Error(err))
		}
		d.log.Info("replayed spooled event", zap.String("event", ev.ID), zap.String("file", s.File))
		last = ev.ID
	}
	return last
}

// RequestReload asks Run to reload the config (SIGHUP); requests made
// while one is waiting are one.
func (d *daemon) RequestReload() {
	select {
	case d.reloads <- struct{}{}:
	default:
	}
}

// Reload re-reads the config (SIGHUP, on Run's goroutine). A bad config is refused and logged
// with its file and line; the running one stays.
func (d *daemon) Reload() {
	// Spooled events are looked for again too, whatever comes of the
	// config (after d.mu is released: the replay takes it).
	defer d.replaySpool()
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
	// Apps keep their pending changes across the reload: one reload per
	// certbot run even when the config changes in the middle of it.
	if err := d.runner.Update(context.Background(), specs); err != nil {
		d.log.Error("config reload: some apps could not be started", zap.Error(err))
	}
	d.cfg = cfg
	d.server.SetPolicy(policy(cfg))
	d.log.Info("config reloaded", zap.Int("apps", len(specs)))
}

// Shutdown stops taking events, lets queued events finish, runs pending
// reloads, and closes the journal.
func (d *daemon) Shutdown(ctx context.Context) error {
	if d.server != nil {
		if err := d.server.Stop(ctx); err != nil {
			d.log.Warn("stop taking events", zap.Error(err))
		}
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

// recorder keeps what each app applied, for catch-up and status.
type recorder struct{ s *applied.Store }

func (r recorder) Applied(app string, domains map[string]*event.Material) error {
	now := time.Now().UTC()
	recs := make(map[string]applied.Record, len(domains))
	for d, m := range domains {
		recs[d] = applied.Record{Fingerprint: m.Fingerprint, NotAfter: m.NotAfter, Lineage: m.Paths[event.KeyLineage], Time: now}
	}
	return r.s.SetMany(app, recs)
}
