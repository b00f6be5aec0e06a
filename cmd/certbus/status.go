package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/applied"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/internal/systemd"
	"github.com/certbus/certbus/internal/verify"
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

// Copy states.
const (
	copyUpToDate   = "up-to-date"
	copyOutdated   = "outdated-copy"
	copyMissing    = "missing"
	copyUnreadable = "unreadable"
	copyNA         = "n/a"
)

// Daemon states.
const (
	daemonFresh    = "fresh"
	daemonReloaded = "reloaded"
	daemonServing  = "serving"
	daemonStale    = "stale"
	daemonStopped  = "stopped"
	daemonUnknown  = "unknown"
	daemonNA       = "n/a"
)

// Probe states.
const (
	probeMatch    = "match"
	probeMismatch = "mismatch"
	probeFailed   = "failed"
	probeNA       = "n/a"
)

// preciseTime shows start and write times that may be a moment apart.
const preciseTime = "2006-01-02 15:04:05.000"

// startSlack absorbs the resolution of a process's start time (clock
// ticks) and of systemd's timestamps: a daemon is stale only when it
// started clearly before the certificate was written.
const startSlack = 50 * time.Millisecond

// statusReport is what `certbus status --json` prints.
type statusReport struct {
	Time     time.Time     `json:"time"`
	OK       bool          `json:"ok"`
	Problems int           `json:"problems"`
	Apps     []statusApp   `json:"apps"`
	Rows     []statusRow   `json:"rows"`
	Events   []statusEvent `json:"events"`
	Fix      *fixReport    `json:"fix,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

type statusApp struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Domains []string `json:"domains,omitempty"`
	Reload  []string `json:"reload,omitempty"`
	Verify  string   `json:"verify,omitempty"`
	Error   string   `json:"error,omitempty"`
}

type statusRow struct {
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

type statusEvent struct {
	Time      time.Time         `json:"time"`
	ID        string            `json:"id"`
	Operation string            `json:"operation"`
	Domains   []string          `json:"domains,omitempty"`
	Results   map[string]string `json:"results,omitempty"`
}

type fixReport struct {
	Deployed []fixDeploy `json:"deployed"`
	Results  []fixResult `json:"results"`
	Error    string      `json:"error,omitempty"`
}

// fixResult is an app's outcome of the fix's post.
type fixResult struct {
	App     string `json:"app"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type fixDeploy struct {
	Event   string   `json:"event"`
	Source  string   `json:"source"`
	Domains []string `json:"domains"`
}

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
		if fixable(rep) > 0 && !o.fix {
			hint = "`certbus status --fix` redeploys the stale, outdated and missing rows through the daemon"
		}
		return withCode(exitError, fmt.Errorf("%d problem(s): %s", rep.Problems, summary(rep)), hint)
	}
	return nil
}

// collect builds the report; it changes nothing.
func (o *statusOptions) collect(ctx context.Context, cfg *config.Config) *statusReport {
	now := time.Now()
	rep := &statusReport{Time: now.UTC(), Apps: []statusApp{}, Rows: []statusRow{}, Events: []statusEvent{}}
	warn := func(format string, args ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, args...)) }

	var entries []journal.Entry
	if j, err := journal.Open(cfg.StateDir); err != nil {
		warn("journal: %v", err)
	} else {
		if entries, err = j.Recent(journalHistory); err != nil {
			warn("journal: %v", err)
		}
		j.Close()
	}
	records := map[string]map[string]applied.Record{}
	if st, err := applied.Open(cfg.StateDir); err != nil {
		warn("%v", err)
	} else {
		records = st.All()
	}
	sources := findSources(cfg, entries, warn)
	d := &daemons{ctx: ctx, cache: map[string]daemonInfo{}}
	defer d.close()

	env := &apps.Env{LetsencryptDir: cfg.LetsencryptDir, Reload: cfg.Reload, Log: zap.NewNop()}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		s, err := apps.Build(a, env)
		if err != nil {
			rep.Apps = append(rep.Apps, statusApp{Name: a.Name, Type: a.Type, Error: err.Error()})
			rep.Problems++
			continue
		}
		app := statusApp{Name: s.Name, Type: s.Type, Domains: s.DomainList()}
		for _, r := range s.Reloaders {
			app.Reload = append(app.Reload, r.Name())
		}
		if s.Verify != nil {
			app.Verify = verify.Target{Address: s.Verify.Address, ServerName: s.Verify.ServerName, StartTLS: s.Verify.StartTLS}.String()
		}
		rep.Apps = append(rep.Apps, app)
		refs := daemonRefs(s.Reloaders)
		for _, dom := range appDomains(s, sources) {
			row := statusRow{App: s.Name, Domain: dom, src: sources[dom]}
			o.fillRow(ctx, &row, s, refs, d, records[s.Name][dom], now)
			rep.Problems += len(row.Problems)
			rep.Rows = append(rep.Rows, row)
		}
	}
	n := o.events
	if n > len(entries) {
		n = len(entries)
	}
	for _, e := range entries[len(entries)-n:] {
		ev := statusEvent{Time: e.Time, ID: e.ID, Operation: string(e.Operation)}
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
func (o *statusOptions) fillRow(ctx context.Context, row *statusRow, s *apps.Spec, refs []daemonRef, d *daemons, rec applied.Record, now time.Time) {
	src := row.src
	row.Copy, row.Daemon = copyNA, daemonNA
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
	case left < time.Duration(o.warnDays)*24*time.Hour:
		row.Problems = append(row.Problems, fmt.Sprintf("certificate expires in %d day(s), on %s", days, src.leaf.NotAfter.UTC().Format(time.DateOnly)))
	}

	// What the daemon reads, and since when it holds this certificate.
	written := src.written
	if s.Copy != nil {
		var copied time.Time
		row.CopyPath = apps.ExpandPath(s.Copy.Certificate, row.Domain)
		row.Copy, row.CopyDetail, copied = checkCopy(row.CopyPath, apps.ExpandPath(s.Copy.PrivateKey, row.Domain), src)
		if row.Copy == copyUpToDate {
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
		o.judgeDaemon(row, refs, d, written)
	}

	if o.probe {
		row.Probe = probeNA
		if s.Verify != nil {
			o.probeRow(ctx, row, s.Verify)
		}
	}
	if row.Daemon == daemonStale {
		if row.Probe == probeMatch {
			row.Daemon = daemonServing
			row.DaemonDetail += "; but the probe shows it serves the certificate on disk"
		} else {
			row.Problems = append(row.Problems, "stale: "+row.DaemonDetail)
		}
	}
}

// judgeDaemon sets the daemon state from its start time against written,
// the time the certificate it must serve appeared where it reads it.
func (o *statusOptions) judgeDaemon(row *statusRow, refs []daemonRef, d *daemons, written time.Time) {
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
		row.Daemon = daemonReloaded
		row.DaemonDetail = fmt.Sprintf("%s; certbus reloaded it onto this certificate at %s", strings.Join(before, ", "), row.Applied.Local().Format(time.DateTime))
	case len(before) > 0:
		row.Daemon = daemonStale
		row.DaemonDetail = fmt.Sprintf("%s, before the certificate was written (%s), and no reload onto it is recorded",
			strings.Join(before, ", "), written.Local().Format(preciseTime))
	case len(unknown) > 0:
		row.Daemon = daemonUnknown
		row.DaemonDetail = strings.Join(unknown, "; ")
	case running == 0:
		row.Daemon = daemonStopped
		var names []string
		for _, r := range refs {
			names = append(names, r.String())
		}
		row.DaemonName = strings.Join(names, ", ")
		row.DaemonDetail = "not running: it reads the current files when it starts"
	default:
		row.Daemon = daemonFresh
		row.DaemonDetail = "started after the certificate was written"
	}
}

func (o *statusOptions) probeRow(ctx context.Context, row *statusRow, v *apps.VerifySpec) {
	t := verify.Target{Address: v.Address, ServerName: apps.ExpandPath(v.ServerName, strings.TrimPrefix(row.Domain, "*.")), StartTLS: v.StartTLS}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	leaf, err := verify.Leaf(pctx, t)
	switch {
	case err != nil:
		row.Probe, row.ProbeDetail = probeFailed, err.Error()
		row.Problems = append(row.Problems, "probe failed: "+err.Error())
	case verify.Fingerprint(leaf) == row.Fingerprint:
		row.Probe, row.Served = probeMatch, row.Fingerprint
		row.ProbeDetail = t.String() + " serves the certificate on disk"
	default:
		row.Probe, row.Served = probeMismatch, verify.Fingerprint(leaf)
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

// certSource is the certificate a domain should be served with now.
type certSource struct {
	path    string            // the certificate file
	paths   map[string]string // Notify's info to deploy it again
	leaf    *x509.Certificate
	fp      string
	written time.Time // when the certificate file was written
}

// findSources maps each domain to its newest certificate on disk: certbot's
// lineages under letsencrypt_dir, and the files other ACME clients (lego,
// acme.sh, dehydrated, which keep their own stores) last handed a hook, as
// the journal remembers them. Files are read again now: a client renews in
// place.
func findSources(cfg *config.Config, entries []journal.Entry, warn func(string, ...any)) map[string]*certSource {
	byPath := map[string]*certSource{}
	load := func(p string, paths map[string]string) *certSource {
		p = filepath.Clean(p)
		if s, ok := byPath[p]; ok {
			return s
		}
		leaf, mtime, err := readLeaf(p)
		if err != nil {
			byPath[p] = nil
			return nil
		}
		s := &certSource{path: p, paths: paths, leaf: leaf, fp: certs.Fingerprint(leaf), written: mtime}
		byPath[p] = s
		return s
	}
	out := map[string]*certSource{}
	offer := func(d string, s *certSource) {
		if s == nil || !certs.Covers(s.leaf, d) {
			return
		}
		cur := out[d]
		if cur == nil || s.leaf.NotBefore.After(cur.leaf.NotBefore) ||
			s.leaf.NotBefore.Equal(cur.leaf.NotBefore) && s.written.After(cur.written) {
			out[d] = s
		}
	}
	lineages, errs := hooks.ScanLineages(cfg.LetsencryptDir)
	for _, err := range errs {
		warn("%v", err)
	}
	for _, l := range lineages {
		if len(l.Names) == 0 {
			continue // no DNS name: nothing certbus can serve
		}
		info := hooks.LineageDomains(l.Dir, l.Names[:1])[l.Names[0]]
		s := load(filepath.Join(l.Dir, "cert.pem"), info)
		for _, n := range l.Names {
			offer(n, s)
		}
	}
	for _, e := range entries {
		if e.Operation != event.Deploy {
			continue
		}
		for d, ed := range e.Domains {
			if p := ed.Paths[event.KeyCertificate]; p != "" {
				offer(d, load(p, ed.Paths))
			}
		}
	}
	return out
}

// readLeaf reads the first certificate of a PEM file and the time the file
// (after symlinks: certbot's archive file) was last written.
func readLeaf(p string) (*x509.Certificate, time.Time, error) {
	data, err := readLimited(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	leaf, err := firstCert(data)
	return leaf, st.ModTime(), err
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, certs.MaxFileSize))
}

// firstCert skips what may precede the leaf (a private key, in a combined
// key+chain file) and parses the first certificate.
func firstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// firstKey parses the first private key block.
func firstKey(data []byte) (crypto.PrivateKey, error) {
	for {
		var b *pem.Block
		rest := data
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key")
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return certcrypto.ParsePEMPrivateKey(rest)
		}
	}
}

// checkCopy compares an app's copy with the source: the copy's leaf must be
// the source's, and its key the leaf's. It returns the state, a detail and
// when the copy was written.
func checkCopy(certPath, keyPath string, src *certSource) (string, string, time.Time) {
	if certPath == "" {
		return copyNA, "", time.Time{}
	}
	leaf, mtime, err := readLeaf(certPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return copyMissing, certPath + " does not exist", time.Time{}
	case errors.Is(err, os.ErrPermission):
		return copyUnreadable, err.Error() + " (run status as root)", time.Time{}
	case err != nil:
		return copyOutdated, fmt.Sprintf("%s: %v", certPath, err), time.Time{}
	}
	if fp := certs.Fingerprint(leaf); fp != src.fp {
		return copyOutdated, fmt.Sprintf("%s holds %s (expires %s), the source %s holds %s (expires %s)",
			certPath, shortFP(fp), leaf.NotAfter.UTC().Format(time.DateOnly), src.path, shortFP(src.fp), src.leaf.NotAfter.UTC().Format(time.DateOnly)), mtime
	}
	if keyPath == "" {
		return copyUpToDate, certPath, mtime
	}
	data, err := readLimited(keyPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return copyMissing, keyPath + " does not exist", mtime
	case errors.Is(err, os.ErrPermission):
		return copyUnreadable, err.Error() + " (run status as root)", mtime
	case err != nil:
		return copyOutdated, fmt.Sprintf("%s: %v", keyPath, err), mtime
	}
	key, err := firstKey(data)
	if err != nil {
		return copyOutdated, fmt.Sprintf("%s: %v", keyPath, err), mtime
	}
	signer, ok := key.(crypto.Signer)
	pub, ok2 := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !ok2 || !pub.Equal(signer.Public()) {
		return copyOutdated, fmt.Sprintf("the key in %s does not match the certificate in %s", keyPath, certPath), mtime
	}
	return copyUpToDate, certPath, mtime
}

// appDomains lists the domains of s that have a source, and the names s
// lists that have none (wildcard patterns without one are left out: they
// match names, they need not be one).
func appDomains(s *apps.Spec, sources map[string]*certSource) []string {
	seen := map[string]bool{}
	var out []string
	for d := range sources {
		if s.Serves(d) {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, d := range s.DomainList() {
		if d != "*" && !strings.HasPrefix(d, "*.") && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// daemonRef names a daemon an app reloads: a systemd unit, or a process
// found through a PID file (or a function, for a unit's main PID).
type daemonRef struct {
	unit    string
	pidFile string
	pid     func(context.Context) (int, error)
	label   string
}

func (r daemonRef) String() string {
	switch {
	case r.unit != "":
		return r.unit
	case r.pidFile != "":
		return "pid file " + r.pidFile
	}
	return r.label
}

// daemonRefs finds the daemons behind an app's reload methods, looking
// through methods that wrap others (a config test before a reload).
func daemonRefs(rs []apps.Reloader) []daemonRef {
	var out []daemonRef
	seen := map[string]bool{}
	var walk func(r apps.Reloader, depth int)
	walk = func(r apps.Reloader, depth int) {
		if r == nil || depth > 4 {
			return
		}
		var ref daemonRef
		switch m := r.(type) {
		case *apps.UnitReloader:
			ref = daemonRef{unit: m.Unit}
		case *apps.SignalReloader:
			ref = daemonRef{pidFile: m.PIDFile, pid: m.PID, label: m.Name()}
		}
		if k := ref.String(); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, ref)
		}
		for _, in := range wrapped(r) {
			walk(in, depth+1)
		}
	}
	for _, r := range rs {
		walk(r, 0)
	}
	return out
}

// wrapped returns the reloaders a reloader holds in its exported fields.
func wrapped(r apps.Reloader) []apps.Reloader {
	v := reflect.ValueOf(r)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []apps.Reloader
	add := func(f reflect.Value) {
		if !f.CanInterface() || (f.Kind() == reflect.Pointer || f.Kind() == reflect.Interface) && f.IsNil() {
			return
		}
		if in, ok := f.Interface().(apps.Reloader); ok {
			out = append(out, in)
		}
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Slice {
			for j := 0; j < f.Len(); j++ {
				add(f.Index(j))
			}
			continue
		}
		add(f)
	}
	return out
}

// daemonInfo is what is known of a daemon's process.
type daemonInfo struct {
	running bool
	start   time.Time
	err     error
}

// daemons looks daemons up once per status run; systemd is asked only if
// some app reloads a unit.
type daemons struct {
	ctx   context.Context
	cache map[string]daemonInfo
	sd    *systemd.Manager
	sdErr error
}

func (d *daemons) get(ref daemonRef) daemonInfo {
	k := ref.String()
	if info, ok := d.cache[k]; ok {
		return info
	}
	var info daemonInfo
	if ref.unit != "" {
		info = d.unit(ref.unit)
	} else {
		info = pidInfo(d.ctx, ref)
	}
	d.cache[k] = info
	return info
}

func (d *daemons) unit(unit string) daemonInfo {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	if d.sd == nil && d.sdErr == nil {
		d.sd, d.sdErr = systemd.Connect(ctx)
	}
	if d.sdErr != nil {
		return daemonInfo{err: d.sdErr}
	}
	pid, err := d.sd.MainPID(ctx, unit)
	if err != nil {
		return daemonInfo{err: err}
	}
	if pid == 0 {
		return daemonInfo{}
	}
	t, err := d.sd.ActiveEnterTimestamp(ctx, unit)
	if err != nil {
		return daemonInfo{err: err}
	}
	return daemonInfo{running: true, start: t}
}

func (d *daemons) close() {
	if d.sd != nil {
		d.sd.Close()
	}
}

// pidInfo finds the process of a PID file (or PID function) and when it
// started. A PID file naming no live process means the daemon is stopped.
func pidInfo(ctx context.Context, ref daemonRef) daemonInfo {
	var pid int
	var err error
	if ref.pidFile != "" {
		pid, err = apps.ReadPIDFile(ref.pidFile)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				return daemonInfo{}
			}
			return daemonInfo{err: err}
		}
	} else {
		if pid, err = ref.pid(ctx); err != nil {
			return daemonInfo{err: err}
		}
		if pid == 0 {
			return daemonInfo{}
		}
	}
	start, err := processStart(pid)
	if errors.Is(err, os.ErrNotExist) {
		return daemonInfo{}
	}
	if err != nil {
		return daemonInfo{err: err}
	}
	return daemonInfo{running: true, start: start}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// processStart returns when process pid started: its start time since boot
// (/proc/PID/stat field 22, which counts suspended time as CLOCK_BOOTTIME
// does) placed on the wall clock through CLOCK_BOOTTIME now. Unlike
// /proc/stat's btime, which has whole seconds, this is exact to a tick.
func processStart(pid int) (time.Time, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, err
	}
	// The command name (field 2) may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	now := time.Now()
	sinceStart := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/clockTicks
	return now.Add(-sinceStart), nil
}

// fixable counts the rows --fix can repair.
func fixable(rep *statusReport) int {
	n := 0
	for _, r := range rep.Rows {
		if needsFix(r) {
			n++
		}
	}
	return n
}

func needsFix(r statusRow) bool {
	return r.src != nil && (r.Daemon == daemonStale || r.Copy == copyOutdated || r.Copy == copyMissing)
}

// runFix deploys again, through the daemon, the certificates of the rows
// that need it: one pre, a deploy per certificate, one post, so that each
// app reloads once; it waits for the post's results. The deploys reach
// every app serving those domains, as a renewal would. Nothing is sent when
// nothing needs fixing.
func (o *statusOptions) runFix(ctx context.Context, rep *statusReport) *fixReport {
	groups := map[string]map[string]bool{}
	srcs := map[string]*certSource{}
	for _, r := range rep.Rows {
		if !needsFix(r) {
			continue
		}
		if groups[r.src.path] == nil {
			groups[r.src.path] = map[string]bool{}
		}
		groups[r.src.path][r.Domain] = true
		srcs[r.src.path] = r.src
	}
	fr := &fixReport{Deployed: []fixDeploy{}, Results: []fixResult{}}
	if len(groups) == 0 {
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
	paths := make([]string, 0, len(groups))
	for p := range groups {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var errs []string
	for _, p := range paths {
		doms := hooks.Domains{}
		var names []string
		for d := range groups[p] {
			info := map[string]string{}
			for k, v := range srcs[p].paths {
				info[k] = v
			}
			doms[d] = info
			names = append(names, d)
		}
		sort.Strings(names)
		id, err := c.Notify(ctx, string(event.Deploy), doms)
		if err != nil {
			errs = append(errs, fmt.Sprintf("deploy %s: %v", p, err))
			continue
		}
		fr.Deployed = append(fr.Deployed, fixDeploy{Event: id, Source: p, Domains: names})
	}
	// The post always goes: it releases what the pre held back.
	id, err := c.Notify(ctx, string(event.Post), nil)
	if err != nil {
		errs = append(errs, fmt.Sprintf("post: %v", err))
	} else if res, err := c.Wait(ctx, id, time.Until(deadline(ctx))); err != nil {
		errs = append(errs, fmt.Sprintf("wait for post %s: %v", id, err))
	} else {
		for _, r := range res {
			fr.Results = append(fr.Results, fixResult{App: r.App, Status: r.Status, Message: r.Message})
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
func summary(rep *statusReport) string {
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
func (o *statusOptions) printHuman(rep *statusReport) {
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
			if r.src != nil {
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
