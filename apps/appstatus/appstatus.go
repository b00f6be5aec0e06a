// Package appstatus judges, per configured app and domain, whether the
// daemon serves the certificate it should: the certificate's expiry, the
// state of the app's own copy, whether the daemon started (or was reloaded)
// after the certificate was written, and optionally what a TLS handshake
// shows. It is the logic behind `certbus status`.
//
// It only reads: it changes no file, prints nothing, and never talks to
// the certbus daemon. For `certbus status --fix` it says which
// certificates to deploy again ([Report.FixPlan]); sending them is the
// caller's. It does not scan certbot's lineages either: the caller passes
// them in ([Options.Lineages]), so that this package needs nothing from
// hooks or bus.
package appstatus

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/applied"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/internal/verify"
)

// Copy states: Row.Copy.
const (
	CopyUpToDate   = "up-to-date"
	CopyOutdated   = "outdated-copy"
	CopyMissing    = "missing"
	CopyUnreadable = "unreadable"
	CopyNA         = "n/a"
)

// Daemon states: Row.Daemon.
const (
	DaemonFresh    = "fresh"
	DaemonReloaded = "reloaded"
	DaemonServing  = "serving"
	DaemonStale    = "stale"
	DaemonStopped  = "stopped"
	DaemonUnknown  = "unknown"
	DaemonNA       = "n/a"
)

// Probe states: Row.Probe.
const (
	ProbeMatch    = "match"
	ProbeMismatch = "mismatch"
	ProbeFailed   = "failed"
	ProbeNA       = "n/a"
)

// preciseTime shows start and write times that may be a moment apart.
const preciseTime = "2006-01-02 15:04:05.000"

// startSlack absorbs the resolution of a process's start time (clock
// ticks) and of systemd's timestamps: a daemon is stale only when it
// started clearly before the certificate was written.
const startSlack = 50 * time.Millisecond

// Options says what Collect looks at.
type Options struct {
	// Config is the loaded certbus configuration.
	Config *config.Config
	// Lineages are certbot's lineages under the config's letsencrypt_dir,
	// and LineageErrors what went wrong scanning them (each becomes a
	// warning).
	Lineages      []Lineage
	LineageErrors []error
	// History is how many journal entries to read for the certificates
	// other ACME clients handed a hook.
	History int
	// Events is how many of the most recent journal entries to report.
	Events int
	// WarnDays: a certificate expiring within this many days is a problem.
	WarnDays int
	// Probe makes a TLS handshake with each app's verify endpoint.
	Probe bool
}

// Lineage is a certbot lineage: its certificate's DNS names and the files
// a deploy event names (keys of internal/event: certificate, private_key,
// fullchain, chain, lineage).
type Lineage struct {
	Names []string
	Paths map[string]string
}

// Report is what `certbus status --json` prints: its JSON field names are
// a contract.
type Report struct {
	Time     time.Time `json:"time"`
	OK       bool      `json:"ok"`
	Problems int       `json:"problems"`
	Apps     []App     `json:"apps"`
	Rows     []Row     `json:"rows"`
	Events   []Event   `json:"events"`
	// Fix is set by the caller after a --fix run; Collect leaves it nil.
	Fix      *FixReport `json:"fix,omitempty"`
	Warnings []string   `json:"warnings,omitempty"`
}

// App is a configured app, or the error building it.
type App struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Domains []string `json:"domains,omitempty"`
	Reload  []string `json:"reload,omitempty"`
	Verify  string   `json:"verify,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Row is the state of one app's domain.
type Row struct {
	App    string `json:"app"`
	Domain string `json:"domain"`
	// Source is the certificate file the domain's certificate comes from.
	Source      string    `json:"source,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	DaysLeft    *int      `json:"days_left,omitempty"`
	Written     time.Time `json:"written,omitzero"`

	Copy       string `json:"copy"`
	CopyPath   string `json:"copy_path,omitempty"`
	CopyDetail string `json:"copy_detail,omitempty"`

	Daemon        string    `json:"daemon"`
	DaemonName    string    `json:"daemon_name,omitempty"`
	DaemonStarted time.Time `json:"daemon_started,omitzero"`
	DaemonDetail  string    `json:"daemon_detail,omitempty"`
	// Applied is when certbus last recorded this app applying this
	// certificate (installed and reloaded), if it did.
	Applied time.Time `json:"applied,omitzero"`

	Probe       string `json:"probe,omitempty"`
	Served      string `json:"served_fingerprint,omitempty"`
	ProbeDetail string `json:"probe_detail,omitempty"`

	Problems []string `json:"problems,omitempty"`

	src *certSource
}

// HasCertificate reports whether a certificate is known for the row's
// domain (then NotAfter and DaysLeft are set). It is false for a row
// decoded from JSON.
func (r Row) HasCertificate() bool { return r.src != nil }

// Event is a recent journal entry.
type Event struct {
	Time      time.Time         `json:"time"`
	ID        string            `json:"id"`
	Operation string            `json:"operation"`
	Domains   []string          `json:"domains,omitempty"`
	Results   map[string]string `json:"results,omitempty"`
}

// FixReport is what a --fix run sent and what came back.
type FixReport struct {
	Deployed []FixDeploy `json:"deployed"`
	Results  []FixResult `json:"results"`
	Error    string      `json:"error,omitempty"`
}

// FixResult is an app's outcome of the fix's post.
type FixResult struct {
	App     string `json:"app"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// FixDeploy is a deploy event a --fix run sent.
type FixDeploy struct {
	Event   string   `json:"event"`
	Source  string   `json:"source"`
	Domains []string `json:"domains"`
}

// Collect builds the report; it changes nothing. What it cannot read
// becomes a warning or a problem in the report, not an error.
func Collect(ctx context.Context, o Options) *Report {
	cfg := o.Config
	now := time.Now()
	rep := &Report{Time: now.UTC(), Apps: []App{}, Rows: []Row{}, Events: []Event{}}
	warn := func(format string, args ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, args...)) }

	// Read-only: the daemon may be writing the journal right now.
	entries, err := journal.ReadRecent(cfg.StateDir, o.History)
	if err != nil {
		warn("journal: %v", err)
	}
	records := map[string]map[string]applied.Record{}
	if st, err := applied.Open(cfg.StateDir); err != nil {
		warn("%v", err)
	} else {
		records = st.All()
	}
	for _, err := range o.LineageErrors {
		warn("%v", err)
	}
	sources := findSources(o.Lineages, entries)
	d := &daemons{ctx: ctx, cache: map[string]daemonInfo{}}
	defer d.close()

	env := &apps.Env{LetsencryptDir: cfg.LetsencryptDir, Reload: cfg.Reload, Log: zap.NewNop()}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		s, err := apps.Build(a, env)
		if err != nil {
			rep.Apps = append(rep.Apps, App{Name: a.Name, Type: a.Type, Error: err.Error()})
			rep.Problems++
			continue
		}
		app := App{Name: s.Name, Type: s.Type, Domains: s.DomainList()}
		for _, r := range s.Reloaders {
			app.Reload = append(app.Reload, r.Name())
		}
		if s.Verify != nil {
			app.Verify = verify.Target{Address: s.Verify.Address, ServerName: s.Verify.ServerName, StartTLS: s.Verify.StartTLS}.String()
		}
		rep.Apps = append(rep.Apps, app)
		refs := daemonRefs(s.Reloaders)
		for _, dom := range appDomains(s, sources) {
			row := Row{App: s.Name, Domain: dom, src: sources[dom]}
			o.fillRow(ctx, &row, s, refs, d, records[s.Name][dom], now)
			rep.Problems += len(row.Problems)
			rep.Rows = append(rep.Rows, row)
		}
	}
	n := o.Events
	if n > len(entries) {
		n = len(entries)
	}
	for _, e := range entries[len(entries)-n:] {
		ev := Event{Time: e.Time, ID: e.ID, Operation: string(e.Operation)}
		for dom := range e.Domains {
			ev.Domains = append(ev.Domains, dom)
		}
		sort.Strings(ev.Domains)
		if len(e.Results) > 0 {
			ev.Results = map[string]string{}
			for app, r := range e.Results {
				ev.Results[app] = r.Status
			}
		}
		rep.Events = append(rep.Events, ev)
	}
	rep.OK = rep.Problems == 0
	return rep
}

// fillRow computes one row's expiry, copy, daemon and probe states.
func (o Options) fillRow(ctx context.Context, row *Row, s *apps.Spec, refs []daemonRef, d *daemons, rec applied.Record, now time.Time) {
	src := row.src
	row.Copy, row.Daemon = CopyNA, DaemonNA
	if src == nil {
		row.DaemonDetail = "no certificate known for this domain (none in letsencrypt_dir/live, no deploy in the journal)"
		return
	}
	row.Source, row.Fingerprint, row.NotAfter, row.Written = src.path, src.fp, src.leaf.NotAfter.UTC(), src.written.UTC()
	days := int(src.leaf.NotAfter.Sub(now).Hours() / 24)
	row.DaysLeft = &days
	switch left := src.leaf.NotAfter.Sub(now); {
	case left <= 0:
		row.Problems = append(row.Problems, "certificate expired on "+src.leaf.NotAfter.UTC().Format(time.DateOnly))
	case left < time.Duration(o.WarnDays)*24*time.Hour:
		row.Problems = append(row.Problems, fmt.Sprintf("certificate expires in %d day(s), on %s", days, src.leaf.NotAfter.UTC().Format(time.DateOnly)))
	}

	// What the daemon reads, and since when it holds this certificate.
	written := src.written
	if s.Copy != nil {
		var copied time.Time
		row.CopyPath = apps.ExpandPath(s.Copy.Certificate, row.Domain)
		row.Copy, row.CopyDetail, copied = checkCopy(row.CopyPath, apps.ExpandPath(s.Copy.PrivateKey, row.Domain), src)
		if row.Copy == CopyUpToDate {
			written = copied
		} else {
			row.Problems = append(row.Problems, row.Copy+": "+row.CopyDetail)
		}
	}
	if rec.Fingerprint == src.fp {
		row.Applied = rec.Time.UTC()
	}

	if len(refs) == 0 {
		row.DaemonDetail = "reloads by command or not at all: its start time is unknown"
		if len(s.Reloaders) == 0 {
			row.DaemonDetail = "no reload configured"
		}
	} else {
		judgeDaemon(row, refs, d, written)
	}

	if o.Probe {
		row.Probe = ProbeNA
		if s.Verify != nil {
			probeRow(ctx, row, s.Verify)
		}
	}
	if row.Daemon == DaemonStale {
		if row.Probe == ProbeMatch {
			row.Daemon = DaemonServing
			row.DaemonDetail += "; but the probe shows it serves the certificate on disk"
		} else {
			row.Problems = append(row.Problems, "stale: "+row.DaemonDetail)
		}
	}
}

// judgeDaemon sets the daemon state from its start time against written,
// the time the certificate it must serve appeared where it reads it.
func judgeDaemon(row *Row, refs []daemonRef, d *daemons, written time.Time) {
	var before, unknown []string
	running := 0
	var earliest time.Time
	for _, ref := range refs {
		info := d.get(ref)
		switch {
		case info.err != nil:
			unknown = append(unknown, fmt.Sprintf("%s: %v", ref, info.err))
			continue
		case !info.running:
			continue
		}
		running++
		if earliest.IsZero() || info.start.Before(earliest) {
			earliest = info.start
			row.DaemonName, row.DaemonStarted = ref.String(), info.start.UTC()
		}
		if info.start.Add(startSlack).Before(written) {
			before = append(before, fmt.Sprintf("%s started %s", ref, info.start.Local().Format(preciseTime)))
		}
	}
	switch {
	case len(before) > 0 && !row.Applied.IsZero():
		row.Daemon = DaemonReloaded
		row.DaemonDetail = fmt.Sprintf("%s; certbus reloaded it onto this certificate at %s", strings.Join(before, ", "), row.Applied.Local().Format(time.DateTime))
	case len(before) > 0:
		row.Daemon = DaemonStale
		row.DaemonDetail = fmt.Sprintf("%s, before the certificate was written (%s), and no reload onto it is recorded",
			strings.Join(before, ", "), written.Local().Format(preciseTime))
	case len(unknown) > 0:
		row.Daemon = DaemonUnknown
		row.DaemonDetail = strings.Join(unknown, "; ")
	case running == 0:
		row.Daemon = DaemonStopped
		var names []string
		for _, r := range refs {
			names = append(names, r.String())
		}
		row.DaemonName = strings.Join(names, ", ")
		row.DaemonDetail = "not running: it reads the current files when it starts"
	default:
		row.Daemon = DaemonFresh
		row.DaemonDetail = "started after the certificate was written"
	}
}

func probeRow(ctx context.Context, row *Row, v *apps.VerifySpec) {
	t := verify.Target{Address: v.Address, ServerName: apps.ExpandPath(v.ServerName, apps.ServerNameFor(row.Domain)), StartTLS: v.StartTLS}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	leaf, err := verify.Leaf(pctx, t)
	switch {
	case err != nil:
		row.Probe, row.ProbeDetail = ProbeFailed, err.Error()
		row.Problems = append(row.Problems, "probe failed: "+err.Error())
	case verify.Fingerprint(leaf) == row.Fingerprint:
		row.Probe, row.Served = ProbeMatch, row.Fingerprint
		row.ProbeDetail = t.String() + " serves the certificate on disk"
	default:
		row.Probe, row.Served = ProbeMismatch, verify.Fingerprint(leaf)
		row.ProbeDetail = fmt.Sprintf("%s serves %s (serial %s, expires %s), not the certificate on disk (expires %s)",
			t, shortFP(row.Served), leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.DateOnly), row.NotAfter.Format(time.DateOnly))
		row.Problems = append(row.Problems, "probe mismatch: "+row.ProbeDetail)
	}
}

func shortFP(fp string) string {
	if len(fp) > 16 {
		return fp[:16] + "..."
	}
	return fp
}
