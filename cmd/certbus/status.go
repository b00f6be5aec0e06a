package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/apps/appstatus"
	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/event"
)

type statusOptions struct {
	g        *globalOptions
	events   int
	json     bool
	probe    bool
	fix      bool
	warnDays int
	timeout  time.Duration
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{g: g}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show per app and domain what is on disk, installed and served; exit 1 on a problem",
		Long: `One row per app and domain: the certificate's expiry (certbot's lineage, or the
file an ACME client last handed its hook), the state of the app's own copy
(up-to-date, outdated-copy, missing, or n/a for an app that reads the
lineage directly), and whether the daemon can be serving it:

  fresh     the daemon (systemd unit or PID file process) started after the
            certificate was written
  reloaded  it started before, but certbus recorded a reload onto this
            certificate since
  stale     it started before the certificate was written and no reload is
            recorded since: it still serves the old one
  stopped   not running (it reads the new files when it starts)
  n/a       the app reloads by command: its start time is unknown

--probe makes a TLS handshake (STARTTLS where the app's verify endpoint says)
and compares the leaf the daemon serves with the one on disk; a match
settles a stale verdict (serving).

Exit status 1 when a row is stale, outdated, missing, probed wrong, or its
certificate expires within --days days: usable as a monitoring check.
--fix asks the daemon to deploy the certificates of the stale, outdated and
missing rows again (pre, deploy, post: one reload per app), then reports.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(c.Context()) },
	}
	f := c.Flags()
	f.IntVar(&o.events, "events", 10, "how many recent events to show")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.BoolVar(&o.probe, "probe", false, "handshake with each verify endpoint and compare the served certificate")
	f.BoolVar(&o.fix, "fix", false, "redeploy through the daemon what is stale, outdated or missing")
	f.IntVar(&o.warnDays, "days", 14, "a certificate expiring within this many days is a problem")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound for --fix (and 10s per --probe handshake)")
	return c
}

// The states of a row, short for the printing here (and the tests).
const (
	copyUpToDate   = appstatus.CopyUpToDate
	copyOutdated   = appstatus.CopyOutdated
	copyMissing    = appstatus.CopyMissing
	copyUnreadable = appstatus.CopyUnreadable
	copyNA         = appstatus.CopyNA

	daemonFresh    = appstatus.DaemonFresh
	daemonReloaded = appstatus.DaemonReloaded
	daemonServing  = appstatus.DaemonServing
	daemonStale    = appstatus.DaemonStale
	daemonStopped  = appstatus.DaemonStopped
	daemonUnknown  = appstatus.DaemonUnknown
	daemonNA       = appstatus.DaemonNA

	probeMatch    = appstatus.ProbeMatch
	probeMismatch = appstatus.ProbeMismatch
	probeFailed   = appstatus.ProbeFailed
	probeNA       = appstatus.ProbeNA
)

// statusReport is what `certbus status --json` prints, as a type of this
// package: the tests decode into it and add methods to it.
type statusReport appstatus.Report

// statusRow is one app's domain in it.
type statusRow = appstatus.Row

func (o *statusOptions) run(ctx context.Context) error {
	cfg, err := config.Load(o.g.config)
	if err != nil {
		return withCode(exitError, err, "fix the config (or pass --config)")
	}
	rep := o.collect(ctx, cfg)
	if o.fix {
		fr := o.runFix(ctx, rep)
		if len(fr.Deployed) > 0 || fr.Error != "" {
			rep = o.collect(ctx, cfg)
		}
		rep.Fix = fr
	}
	if o.json {
		enc := json.NewEncoder(o.g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		o.printHuman(rep)
	}
	if rep.Fix != nil && rep.Fix.Error != "" {
		return withCode(exitError, fmt.Errorf("--fix: %s", rep.Fix.Error), "is certbus.service running, and are you root? `systemctl status certbus`")
	}
	if !rep.OK {
		hint := "see the rows above"
		if rep.Fixable() > 0 && !o.fix {
			hint = "`certbus status --fix` redeploys the stale, outdated and missing rows through the daemon"
		}
		return withCode(exitError, fmt.Errorf("%d problem(s): %s", rep.Problems, summary(rep)), hint)
	}
	return nil
}

// collect scans certbot's lineages (here, as appstatus must not import hooks)
// and builds the report; it changes nothing.
func (o *statusOptions) collect(ctx context.Context, cfg *config.Config) *appstatus.Report {
	ls, errs := hooks.ScanLineages(cfg.LetsencryptDir)
	var lineages []appstatus.Lineage
	for _, l := range ls {
		if len(l.Names) == 0 {
			continue // no DNS name: nothing certbus can serve
		}
		lineages = append(lineages, appstatus.Lineage{Names: l.Names, Paths: hooks.LineageDomains(l.Dir, l.Names[:1])[l.Names[0]]})
	}
	return appstatus.Collect(ctx, appstatus.Options{
		Config:        cfg,
		Lineages:      lineages,
		LineageErrors: errs,
		History:       journalHistory,
		Events:        o.events,
		WarnDays:      o.warnDays,
		Probe:         o.probe,
	})
}

// runFix deploys again, through the daemon, the certificates appstatus
// plans for the rows that need it: one pre, a deploy per certificate, one
// post, so that each app reloads once; it waits for the post's results.
// Nothing is sent when nothing needs fixing.
func (o *statusOptions) runFix(ctx context.Context, rep *appstatus.Report) *appstatus.FixReport {
	plan := rep.FixPlan()
	fr := &appstatus.FixReport{Deployed: []appstatus.FixDeploy{}, Results: []appstatus.FixResult{}}
	if len(plan) == 0 {
		return fr
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := bus.Dial(o.g.bus)
	if err != nil {
		fr.Error = err.Error()
		return fr
	}
	defer c.Close()
	if _, err := c.Notify(ctx, string(event.Pre), nil); err != nil {
		fr.Error = fmt.Sprintf("pre: %v", err)
		return fr
	}
	var errs []string
	for _, d := range plan {
		id, err := c.Notify(ctx, string(event.Deploy), d.Info)
		if err != nil {
			errs = append(errs, fmt.Sprintf("deploy %s: %v", d.Source, err))
			continue
		}
		fr.Deployed = append(fr.Deployed, appstatus.FixDeploy{Event: id, Source: d.Source, Domains: d.Domains})
	}
	// The post always goes: it releases what the pre held back.
	id, err := c.Notify(ctx, string(event.Post), nil)
	if err != nil {
		errs = append(errs, fmt.Sprintf("post: %v", err))
	} else if res, err := c.Wait(ctx, id, time.Until(deadline(ctx))); err != nil {
		errs = append(errs, fmt.Sprintf("wait for post %s: %v", id, err))
	} else {
		for _, r := range res {
			fr.Results = append(fr.Results, appstatus.FixResult{App: r.App, Status: r.Status, Message: r.Message})
			if r.Status == "failed" {
				errs = append(errs, fmt.Sprintf("%s failed: %s", r.App, r.Message))
			}
		}
	}
	fr.Error = strings.Join(errs, "; ")
	return fr
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

// summary names the first few problems for the exit message.
func summary(rep *appstatus.Report) string {
	var parts []string
	for _, a := range rep.Apps {
		if a.Error != "" {
			parts = append(parts, a.Name+": config error")
		}
	}
	for _, r := range rep.Rows {
		for _, p := range r.Problems {
			kind, _, _ := strings.Cut(p, ":")
			if strings.HasPrefix(p, "certificate ") {
				kind = "expiring"
			}
			parts = append(parts, fmt.Sprintf("%s %s %s", r.App, r.Domain, kind))
		}
	}
	if len(parts) > 5 {
		parts = append(parts[:5], fmt.Sprintf("and %d more", len(parts)-5))
	}
	return strings.Join(parts, ", ")
}

// printHuman prints the report as tables, coloured on a terminal.
func (o *statusOptions) printHuman(rep *appstatus.Report) {
	w := o.g.stdout
	color := isTerminal(w)
	for _, s := range rep.Warnings {
		fmt.Fprintf(o.g.stderr, "certbus: warning: %s\n", s)
	}
	fmt.Fprintln(w, "APPS")
	t := &table{color: color}
	t.row(cell{s: "APP"}, cell{s: "TYPE"}, cell{s: "DOMAINS"}, cell{s: "RELOAD"}, cell{s: "VERIFY"})
	for _, a := range rep.Apps {
		if a.Error != "" {
			t.row(cell{s: a.Name}, cell{s: a.Type}, cell{s: "-"}, cell{s: "error: " + a.Error, c: red})
			continue
		}
		reload := strings.Join(a.Reload, " -> ")
		t.row(cell{s: a.Name}, cell{s: a.Type}, cell{s: orDash(strings.Join(a.Domains, " "))}, cell{s: orDash(reload)}, cell{s: orDash(a.Verify)})
	}
	t.write(w)

	fmt.Fprintln(w, "\nCERTIFICATES")
	if len(rep.Rows) == 0 {
		fmt.Fprintln(w, "none: no app serves a domain with a known certificate")
	} else {
		t = &table{color: color}
		head := []cell{{s: "APP"}, {s: "DOMAIN"}, {s: "EXPIRES"}, {s: "COPY"}, {s: "DAEMON"}}
		if o.probe {
			head = append(head, cell{s: "PROBE"})
		}
		t.row(head...)
		for _, r := range rep.Rows {
			exp := cell{s: "-"}
			if r.HasCertificate() {
				exp = cell{s: fmt.Sprintf("%s (%dd)", r.NotAfter.Local().Format(time.DateOnly), *r.DaysLeft), c: green}
				if r.NotAfter.Before(rep.Time.Add(time.Duration(o.warnDays) * 24 * time.Hour)) {
					exp.c = red
				}
			}
			daemon := r.Daemon
			if r.DaemonName != "" && r.Daemon != daemonNA {
				// The table names a PID file by its base name; the
				// problems and --json give the path.
				name := r.DaemonName
				if p, ok := strings.CutPrefix(name, "pid file "); ok {
					name = filepath.Base(p)
				}
				daemon += " (" + name + ")"
			}
			cells := []cell{{s: r.App}, {s: r.Domain}, exp, {s: r.Copy, c: stateColor(r.Copy)}, {s: daemon, c: stateColor(r.Daemon)}}
			if o.probe {
				cells = append(cells, cell{s: r.Probe, c: stateColor(r.Probe)})
			}
			t.row(cells...)
		}
		t.write(w)
		var lines []string
		for _, r := range rep.Rows {
			for _, p := range r.Problems {
				lines = append(lines, fmt.Sprintf("%s %s: %s", r.App, r.Domain, p))
			}
		}
		if len(lines) > 0 {
			fmt.Fprintln(w, "\nPROBLEMS")
			for _, l := range lines {
				fmt.Fprintln(w, paint(color, red, l))
			}
		}
	}

	if rep.Fix != nil {
		fmt.Fprintln(w, "\nFIX")
		if len(rep.Fix.Deployed) == 0 && rep.Fix.Error == "" {
			fmt.Fprintln(w, "nothing to fix")
		}
		for _, d := range rep.Fix.Deployed {
			fmt.Fprintf(w, "deploy %s: %s (%s)\n", d.Event, strings.Join(d.Domains, " "), d.Source)
		}
		for _, r := range rep.Fix.Results {
			fmt.Fprintf(w, "%s: %s: %s\n", r.App, r.Status, r.Message)
		}
	}

	fmt.Fprintln(w, "\nLAST EVENTS")
	if len(rep.Events) == 0 {
		fmt.Fprintln(w, "none yet")
		return
	}
	t = &table{color: color}
	t.row(cell{s: "TIME"}, cell{s: "EVENT"}, cell{s: "OP"}, cell{s: "DOMAINS"}, cell{s: "RESULTS"})
	for _, e := range rep.Events {
		var res []string
		for app, st := range e.Results {
			res = append(res, app+"="+st)
		}
		sort.Strings(res)
		t.row(cell{s: e.Time.Local().Format(time.DateTime)}, cell{s: e.ID}, cell{s: e.Operation},
			cell{s: orDash(strings.Join(e.Domains, " "))}, cell{s: strings.Join(res, " ")})
	}
	t.write(w)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ANSI colours, used only on a terminal.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	reset  = "\x1b[0m"
)

func stateColor(state string) string {
	switch state {
	case copyUpToDate, daemonFresh, daemonReloaded, daemonServing, probeMatch:
		return green
	case copyOutdated, copyMissing, copyUnreadable, daemonStale, probeMismatch, probeFailed:
		return red
	case daemonUnknown, daemonStopped:
		return yellow
	}
	return ""
}

func paint(on bool, c, s string) string {
	if !on || c == "" {
		return s
	}
	return c + s + reset
}

// isTerminal reports whether w is a terminal that wants colours (NO_COLOR
// unset, TERM not dumb).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// table aligns columns on the visible text, so that colour codes do not
// shift them (text/tabwriter counts them as width).
type cell struct{ s, c string }

type table struct {
	color bool
	rows  [][]cell
}

func (t *table) row(cells ...cell) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			if n := len([]rune(c.s)); n > width[i] {
				width[i] = n
			}
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(paint(t.color, c.c, c.s))
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c.s))+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
}
