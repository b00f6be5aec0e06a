package apps

import (
	"context"
	"errors"
	"fmt"
	"github.com/certbus/certbus/internal/certs"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/install"
	"github.com/certbus/certbus/signals"
)

// Verifier proves that an endpoint serves the leaf with the given SHA-256
// fingerprint; internal/verify implements it. It retries until ctx ends.
type Verifier func(ctx context.Context, v VerifySpec, serverName, fingerprint string) error

// Recorder is told what each app successfully applied, for catch-up after a
// restart and for status.
type Recorder interface {
	// Applied records, in one write, the material per domain app applied.
	Applied(app string, domains map[string]*event.Material) error
}

// Options configure a Runner.
type Options struct {
	Log      *zap.Logger
	Verify   Verifier
	Recorder Recorder
	// Signal receives late results of work reported pending.
	Signal *signals.Signal[*event.Event]
}

// Runner connects apps to the signal and owns their reload timers.
type Runner struct {
	opts Options
	apps []*appRunner
}

// NewRunner builds a runner for the given specs and connects every app as a
// subscriber of sig.
func NewRunner(sig *signals.Signal[*event.Event], specs []*Spec, opts Options) (*Runner, error) {
	opts.Signal = sig
	r := &Runner{opts: opts}
	for _, s := range specs {
		if err := r.connect(s); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *Runner) connect(s *Spec) error {
	a := &appRunner{opts: r.opts, log: r.opts.Log.Named("apps." + s.Name)}
	a.specP.Store(s)
	if err := r.opts.Signal.ConnectFiltered(s.Name, budget(s), a.wants, a.handle); err != nil {
		return err
	}
	r.apps = append(r.apps, a)
	return nil
}

// budget bounds one event's handling: every method of the chain, then, on
// failure, every method again on the restored files, each bounded by the
// app's timeout, and a little more.
func budget(s *Spec) time.Duration {
	return s.Timeout*time.Duration(2*len(s.Reloaders)+1) + 5*time.Second
}

// Update applies a new config: an app that keeps its name keeps its
// pending changes and timers under its new spec (a reload already due
// still comes once); a new app is connected; a removed app runs its pending
// reload, then is disconnected.
func (r *Runner) Update(ctx context.Context, specs []*Spec) error {
	byName := make(map[string]*appRunner, len(r.apps))
	for _, a := range r.apps {
		byName[a.sp().Name] = a
	}
	var kept []*appRunner
	var errs []error
	for _, s := range specs {
		if a, ok := byName[s.Name]; ok {
			a.specP.Store(s)
			r.opts.Signal.SetTimeout(s.Name, budget(s))
			kept = append(kept, a)
			delete(byName, s.Name)
			continue
		}
		n := len(r.apps)
		if err := r.connect(s); err != nil {
			errs = append(errs, err)
			continue
		}
		kept = append(kept, r.apps[n])
	}
	for name, a := range byName {
		a.fire(ctx, "app removed from the config")
		a.stopTimer()
		r.opts.Signal.Disconnect(name)
	}
	r.apps = kept
	return errors.Join(errs...)
}

// wants is the app's filter, run by the signal's dispatcher: a deploy for
// none of its domains is skipped without waking the app. An app that
// discovers its domains sees every event, since it re-reads its daemon's
// config first.
func (a *appRunner) wants(ev *event.Event) (bool, string) {
	s := a.sp()
	if ev.Quiet > s.MaxDelay {
		// Every app sees every event here, its own or not: a silence
		// that ends a lost run is noticed by all (handle, deploy).
		a.mu.Lock()
		a.longQuiet = ev.Time
		a.mu.Unlock()
	}
	if len(ev.Only) > 0 && !slices.Contains(ev.Only, s.Name) {
		return false, "catch-up for other apps"
	}
	if ev.Operation != event.Deploy || s.Discover != nil {
		return true, ""
	}
	for d := range ev.Domains {
		if s.Serves(d) {
			return true, ""
		}
	}
	return false, "serves none of the event's domains"
}

// sp is the app's current spec.
func (a *appRunner) sp() *Spec { return a.specP.Load() }

// Close disconnects the apps and stops their timers. A reload already
// running finishes.
func (r *Runner) Close() {
	for _, a := range r.apps {
		r.opts.Signal.Disconnect(a.sp().Name)
		a.stopTimer()
	}
}

// Flush runs every pending reload now (used at shutdown, so that nothing
// installed stays unreloaded).
func (r *Runner) Flush(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range r.apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.fire(ctx, "shutdown")
		}()
	}
	wg.Wait()
}

// Specs returns the apps' specs.
func (r *Runner) Specs() []*Spec {
	out := make([]*Spec, len(r.apps))
	for i, a := range r.apps {
		out[i] = a.sp()
	}
	return out
}

// appRunner is one app's state between events.
type appRunner struct {
	// specP is swapped by Update (SIGHUP) while the app's pending state
	// stays: a config reload in the middle of a certbot run loses nothing.
	specP atomic.Pointer[Spec]
	opts  Options
	log   *zap.Logger

	// run serialises event handling and reloads (a timer may fire while an
	// event is handled).
	run sync.Mutex

	mu           sync.Mutex
	inRun        bool                        // a pre was seen, its post not yet
	runStart     time.Time                   // the time of that pre
	longQuiet    time.Time                   // the time of the last event after a silence of max_delay
	pending      map[string]*event.Material  // domain -> newest material since the last reload
	snaps        map[string]install.Snapshot // path -> content before this batch, for rollback
	waiting      []string                    // event ids reported pending
	firstPending time.Time
	lastEvent    string
	timer        *time.Timer
	timerGen     int // counts timers set and stopped: a callback of an older one does nothing
}

// handle is the app's subscriber.
func (a *appRunner) handle(ctx context.Context, ev *event.Event) (signals.Status, string) {
	if len(ev.Only) > 0 && !slices.Contains(ev.Only, a.sp().Name) {
		return signals.Skipped, "catch-up for other apps"
	}
	a.run.Lock()
	defer a.run.Unlock()
	switch ev.Operation {
	case event.Pre:
		a.mu.Lock()
		a.inRun = true
		a.runStart = ev.Time
		a.mu.Unlock()
		// Changes pending from before (a debounce, a catch-up) join this
		// run: one reload at its post, never past max_delay.
		a.stopTimer()
		a.armMaxDelay()
		return signals.OK, "reloads wait for post"
	case event.Deploy:
		return a.deploy(ctx, ev)
	case event.Post:
		a.mu.Lock()
		a.inRun = false
		n := len(a.pending)
		a.mu.Unlock()
		if n == 0 {
			return signals.Skipped, "nothing to reload"
		}
		return a.reload(ctx, ev.ID, string(ev.Operation))
	}
	return signals.Failed, "unknown operation " + string(ev.Operation)
}

func (a *appRunner) deploy(ctx context.Context, ev *event.Event) (signals.Status, string) {
	if err := a.sp().Rediscover(); err != nil {
		a.log.Warn("domain discovery failed; using the last known domains", zap.Error(err))
	}
	var mine []string
	for _, d := range ev.DomainNames() {
		if a.sp().Serves(d) {
			mine = append(mine, d)
		}
	}
	if len(mine) == 0 {
		return signals.Skipped, "serves none of the event's domains"
	}
	if err := a.install(mine, ev); err != nil {
		a.log.Error("install failed", zap.String("event", ev.ID), zap.Error(err))
		return signals.Failed, err.Error()
	}
	a.mu.Lock()
	if a.pending == nil {
		a.pending = map[string]*event.Material{}
	}
	if len(a.pending) == 0 {
		a.firstPending = time.Now()
	}
	for _, d := range mine {
		a.pending[d] = ev.Domains[d]
	}
	a.lastEvent = ev.ID
	if a.inRun && a.longQuiet.After(a.runStart) && !a.longQuiet.After(ev.Time) {
		// Since the run's pre the daemon went max_delay without any
		// event at all: certbot died between its hooks, and its post
		// will never come. This deploy is a lone one, or every later
		// lone deploy would wait max_delay for that post. (A run's
		// events come seconds or minutes apart, to whichever apps they
		// concern; a run with a longer pause gets a reload more.)
		a.log.Warn("the daemon went max_delay without an event since the run's pre: the run is over, its post lost", zap.Time("pre", a.runStart), zap.Time("silence ended", a.longQuiet))
		a.inRun = false
	}
	inRun := a.inRun
	a.mu.Unlock()
	what := "installed " + strings.Join(mine, " ")
	if a.sp().Copy == nil {
		what = "lineage of " + strings.Join(mine, " ")
	}
	if len(a.sp().Reloaders) == 0 {
		// Nothing to tell: the files are the whole job.
		a.recordApplied(ev.ID)
		return signals.OK, what
	}
	a.mu.Lock()
	a.waiting = append(a.waiting, ev.ID)
	a.mu.Unlock()
	if inRun {
		a.armMaxDelay()
		return signals.Pending, what + "; reload after post"
	}
	a.armDebounce()
	return signals.Pending, fmt.Sprintf("%s; reload in %s", what, a.sp().Debounce)
}

// install writes the app's copies for the domains, keeping a snapshot of
// what each path held before this batch.
func (a *appRunner) install(domains []string, ev *event.Event) error {
	c := a.sp().Copy
	if c == nil {
		return nil
	}
	var files []install.File
	seen := map[string]bool{}
	for _, d := range domains {
		m := ev.Domains[d]
		kp, cp := ExpandPath(c.PrivateKey, d), ExpandPath(c.Certificate, d)
		add := func(f install.File) {
			if !seen[f.Path] {
				seen[f.Path] = true
				files = append(files, f)
			}
		}
		switch {
		case kp != "" && kp == cp:
			add(install.File{Path: kp, Data: certs.JoinPEM(m.PrivateKey, m.Fullchain), UID: c.UID, GID: c.GID, Mode: c.KeyMode})
		default:
			// Key first: a daemon reading the pair mid-way sees the new key
			// with the old certificate for an instant at most, and only the
			// reload that follows makes it load anything.
			if kp != "" {
				add(install.File{Path: kp, Data: m.PrivateKey, UID: c.UID, GID: c.GID, Mode: c.KeyMode})
			}
			if cp != "" {
				add(install.File{Path: cp, Data: m.Fullchain, UID: c.UID, GID: c.GID, Mode: c.CertMode})
			}
		}
	}
	// What each path holds now: the batch's rollback keeps the first
	// (from before the batch), and a group that fails half-installed is
	// put back to this, so that no key is left beside the wrong
	// certificate for the next reload (or boot) to load.
	before := make([]install.Snapshot, 0, len(files))
	for _, f := range files {
		s, err := install.Read(f.Path)
		if err != nil {
			return fmt.Errorf("snapshot %s before install: %w", f.Path, err)
		}
		before = append(before, s)
	}
	a.mu.Lock()
	if a.snaps == nil {
		a.snaps = map[string]install.Snapshot{}
	}
	for _, s := range before {
		if _, ok := a.snaps[s.Path]; !ok {
			a.snaps[s.Path] = s
		}
	}
	a.mu.Unlock()
	err := install.WriteGroup(files)
	var partial *install.PartialError
	if !errors.As(err, &partial) {
		return err // nil, or nothing was installed
	}
	var errs []error
	for _, s := range before {
		if slices.Contains(partial.Installed, s.Path) {
			if rerr := install.Restore(s); rerr != nil {
				errs = append(errs, rerr)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; putting them back failed too: %w", err, errors.Join(errs...))
	}
	return fmt.Errorf("%w; put back as they were before this deploy", err)
}

// reload runs the chain for everything pending, verifies, and rolls back
// when the last method fails.
func (a *appRunner) reload(ctx context.Context, eventID, op string) (signals.Status, string) {
	a.stopTimer()
	if len(a.sp().Reloaders) == 0 {
		// A config reload took the app's reload away while changes
		// were pending: the files installed are the whole job now, as
		// for an app that never had one.
		if !a.recordApplied(eventID) {
			return signals.Skipped, "nothing to reload"
		}
		return signals.OK, noReload
	}
	a.mu.Lock()
	pending := a.pending
	snaps := a.snaps
	waiting := a.waiting
	a.pending, a.snaps, a.waiting = nil, nil, nil
	a.mu.Unlock()
	if len(pending) == 0 {
		return signals.Skipped, "nothing to reload"
	}
	domains := make([]string, 0, len(pending))
	for d := range pending {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	run := RunInfo{EventID: eventID, Operation: op, Domains: domains}
	var errs []string
	for _, m := range a.sp().Reloaders {
		mctx, cancel := context.WithTimeout(ctx, a.sp().Timeout)
		err := m.Reload(mctx, run)
		if err == nil {
			err = a.verifyOrRepeat(mctx, m, run, pending)
		}
		cancel()
		if err == nil {
			a.log.Info("reloaded", zap.String("event", eventID), zap.String("method", m.Name()), zap.Strings("domains", domains))
			a.applied(pending)
			msg := fmt.Sprintf("reloaded (%s) for %s", m.Name(), domainList(domains))
			a.resolve(waiting, eventID, signals.OK, msg)
			return signals.OK, msg
		}
		a.log.Warn("reload method failed", zap.String("event", eventID), zap.String("method", m.Name()), zap.Error(err))
		errs = append(errs, err.Error())
	}
	msg := "reload failed: " + strings.Join(errs, "; then ")
	msg += a.rollback(ctx, snaps, run)
	a.log.Error("app failed", zap.String("event", eventID), zap.String("reason", msg))
	a.resolve(waiting, eventID, signals.Failed, msg)
	return signals.Failed, msg
}

// verifyOrRepeat verifies after m ran. With RepeatAfter, the endpoint gets
// that long to serve the new leaf for one of the domains (the daemon either
// takes connections again or not; the other names are checked after); if
// it does not, m runs once more. Then every domain is verified with the
// rest of the budget.
func (a *appRunner) verifyOrRepeat(ctx context.Context, m Reloader, run RunInfo, pending map[string]*event.Material) error {
	after := a.sp().RepeatAfter
	if after <= 0 || a.sp().Verify == nil || a.opts.Verify == nil {
		return a.verify(ctx, pending)
	}
	first := slices.Min(slices.Collect(maps.Keys(pending)))
	qctx, cancel := context.WithTimeout(ctx, after)
	err := a.verify(qctx, map[string]*event.Material{first: pending[first]})
	cancel()
	if err == nil {
		return a.verify(ctx, pending)
	}
	if ctx.Err() != nil {
		return err
	}
	a.log.Info("new certificate not served yet: running the reload method once more",
		zap.String("event", run.EventID), zap.String("method", m.Name()), zap.Duration("after", after), zap.NamedError("verify", err))
	if err := m.Reload(ctx, run); err != nil {
		return fmt.Errorf("second run: %w", err)
	}
	return a.verify(ctx, pending)
}

func (a *appRunner) verify(ctx context.Context, pending map[string]*event.Material) error {
	fps := make(map[string]string, len(pending))
	for d, m := range pending {
		fps[d] = m.Fingerprint
		if a.sp().Copy == nil {
			// The daemon reads the lineage itself, which may have been
			// renewed again since this event: expect what is there now.
			if now, err := lineageFingerprint(m.Paths[event.KeyCertificate]); err == nil {
				fps[d] = now
			}
		}
	}
	return a.verifyServed(ctx, fps)
}

// verifyServed checks that each domain's endpoint serves the leaf with the
// given fingerprint; one handshake per distinct (server name, leaf).
func (a *appRunner) verifyServed(ctx context.Context, fps map[string]string) error {
	v := a.sp().Verify
	if v == nil || a.opts.Verify == nil {
		return nil
	}
	type key struct{ sni, fp string }
	done := map[key]bool{}
	names := make([]string, 0, len(fps))
	for d := range fps {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		sni := ExpandPath(v.ServerName, ServerNameFor(d))
		k := key{sni, fps[d]}
		if done[k] {
			continue
		}
		done[k] = true
		if err := a.opts.Verify(ctx, *v, sni, fps[d]); err != nil {
			return fmt.Errorf("verify %s at %s: %w", d, v.Address, err)
		}
	}
	return nil
}

// wildcardProbe is the label put in place of a wildcard's "*" to ask for
// it by SNI: a server matches *.example.com for a name under it, never for
// example.com itself, which may be another host or none.
const wildcardProbe = "certbus-verify"

// ServerNameFor is the server name (SNI) that asks an endpoint for the
// certificate of domain d.
func ServerNameFor(d string) string {
	if rest, ok := strings.CutPrefix(d, "*."); ok {
		return wildcardProbe + "." + rest
	}
	return d
}

// previousLeaves is, per domain, the fingerprint of the certificate the
// app's copy held before this batch (nil where unknown: no copy, or none).
func (a *appRunner) previousLeaves(snaps map[string]install.Snapshot, domains []string) map[string]string {
	c := a.sp().Copy
	if c == nil {
		return nil
	}
	out := map[string]string{}
	for _, d := range domains {
		snap, ok := snaps[ExpandPath(c.Certificate, d)]
		if !ok || !snap.Exists {
			return nil // a domain that had nothing before: nothing to prove
		}
		leaf, err := certs.FirstCertificate(snap.Data)
		if err != nil {
			return nil
		}
		out[d] = certs.Fingerprint(leaf)
	}
	return out
}

// rollback restores the files of this batch and reloads once more, so the
// daemon keeps serving what it served before. It returns a note for the
// result message.
func (a *appRunner) rollback(ctx context.Context, snaps map[string]install.Snapshot, run RunInfo) string {
	if len(snaps) == 0 {
		return "; nothing to roll back (the app reads the lineage directly)"
	}
	var errs []error
	paths := make([]string, 0, len(snaps))
	for p := range snaps {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := install.Restore(snaps[p]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Some files may be back and others not: a key beside the
		// wrong certificate. Reloading onto that would take down a
		// daemon that a failed reload usually left serving; say so
		// and leave it to the operator.
		return "; rollback failed, the daemon was not reloaded again (its files may not match: fix them, then reload it): " + errors.Join(errs...).Error()
	}
	// The rollback runs even when the event's budget (or the shutdown's)
	// is spent: a daemon left on files that failed is worse than a late
	// answer. It then gets one method's timeout in all, not one per
	// method, so that a stop stays within systemd's TimeoutStopSec.
	total := a.sp().Timeout * time.Duration(len(a.sp().Reloaders))
	if d, ok := ctx.Deadline(); ok {
		total = min(total, max(time.Until(d), a.sp().Timeout))
	} else if ctx.Err() != nil {
		total = a.sp().Timeout
	}
	ctx, cancelAll := context.WithTimeout(context.WithoutCancel(ctx), total)
	defer cancelAll()
	// Back onto the previous certificate, through the same chain, proving
	// it where the old copy tells which leaf that was.
	prev := a.previousLeaves(snaps, run.Domains)
	var rerrs []string
	for _, m := range a.sp().Reloaders {
		rctx, cancel := context.WithTimeout(ctx, a.sp().Timeout)
		err := m.Reload(rctx, run)
		if err == nil && prev != nil {
			err = a.verifyServed(rctx, prev)
		}
		cancel()
		if err == nil {
			if prev != nil && a.sp().Verify != nil {
				return "; previous files restored and reloaded (" + m.Name() + "), previous certificate served again"
			}
			return "; previous files restored and reloaded (" + m.Name() + ")"
		}
		rerrs = append(rerrs, err.Error())
	}
	if len(rerrs) > 0 {
		return "; previous files restored, but reloading onto them failed: " + strings.Join(rerrs, "; then ")
	}
	return "; previous files restored"
}

func (a *appRunner) applied(pending map[string]*event.Material) {
	if a.opts.Recorder == nil || len(pending) == 0 {
		return
	}
	if err := a.opts.Recorder.Applied(a.sp().Name, pending); err != nil {
		a.log.Warn("record applied certificates", zap.Error(err))
	}
}

// recordApplied is for apps without a reload: the install was the job.
// Deploys that reported pending before a config reload took the app's
// reload away are resolved with it. It reports whether anything was
// pending.
func (a *appRunner) recordApplied(current string) bool {
	a.mu.Lock()
	pending, waiting := a.pending, a.waiting
	a.pending, a.snaps, a.waiting = nil, nil, nil
	a.mu.Unlock()
	a.applied(pending)
	a.resolve(waiting, current, signals.OK, noReload)
	return len(pending) > 0
}

// noReload is the result of changes recorded without a reload.
const noReload = "installed; the app has no reload (config changed)"

// resolve updates the results of events that reported pending.
func (a *appRunner) resolve(ids []string, current string, st signals.Status, msg string) {
	if a.opts.Signal == nil {
		return
	}
	// One message shared by every event resolved: a storm has a thousand.
	r := signals.Result{Subscriber: a.sp().Name, Status: st, Message: msg + " (at " + current + ")"}
	for _, id := range ids {
		if id != current {
			a.opts.Signal.Update(id, r)
		}
	}
}

// armDebounce (re)starts the debounce timer, never past max_delay after the
// first pending change.
func (a *appRunner) armDebounce() {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.sp().Debounce
	if limit := time.Until(a.firstPending.Add(a.sp().MaxDelay)); limit < d {
		d = max(limit, 0)
	}
	a.setTimerLocked(d, "debounce")
}

// armMaxDelay makes sure a pending change inside a pre..post run is reloaded
// at max_delay even if post never comes.
func (a *appRunner) armMaxDelay() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return
	}
	a.setTimerLocked(max(time.Until(a.firstPending.Add(a.sp().MaxDelay)), 0), "max_delay")
}

func (a *appRunner) setTimerLocked(d time.Duration, why string) {
	if a.timer != nil {
		a.timer.Stop()
	}
	a.timerGen++
	gen := a.timerGen
	a.timer = time.AfterFunc(d, func() { a.fireTimer(gen, why) })
}

func (a *appRunner) stopTimer() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.timerGen++
}

// fireTimer is a timer's reload, unless the timer was stopped or replaced
// while its callback waited for the app (a pre that came just as the
// debounce ran out: the pending change joins that run instead).
func (a *appRunner) fireTimer(gen int, why string) {
	a.run.Lock()
	defer a.run.Unlock()
	a.mu.Lock()
	current := gen == a.timerGen
	a.mu.Unlock()
	if current {
		a.fireLocked(context.Background(), why)
	}
}

// fire runs a reload outside an event (debounce, max_delay, shutdown).
func (a *appRunner) fire(ctx context.Context, why string) {
	a.run.Lock()
	defer a.run.Unlock()
	a.fireLocked(ctx, why)
}

func (a *appRunner) fireLocked(ctx context.Context, why string) {
	a.mu.Lock()
	n, id := len(a.pending), a.lastEvent
	a.mu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, budget(a.sp()))
	defer cancel()
	a.log.Info("reload due", zap.String("why", why), zap.String("event", id))
	st, msg := a.reload(ctx, id, why)
	if a.opts.Signal != nil && id != "" {
		a.opts.Signal.Update(id, signals.Result{Subscriber: a.sp().Name, Status: st, Message: msg})
	}
}

// lineageFingerprint is the SHA-256 of the first certificate in path.
func lineageFingerprint(path string) (string, error) {
	if path == "" {
		return "", errors.New("no path")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	c, err := certs.FirstCertificate(b)
	if err != nil {
		return "", err
	}
	return certs.Fingerprint(c), nil
}

// domainList names up to a few domains and counts the rest, so that a
// result for a storm of renewals stays a line, not a page.
func domainList(ds []string) string {
	const show = 8
	if len(ds) <= show {
		return strings.Join(ds, " ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ds[:show], " "), len(ds)-show)
}
