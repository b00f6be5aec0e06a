// Command bench measures certbus against named baselines, side by side, and
// prints one table: hook cost against FreedomBox's bash+gdbus hook, accept
// latency, a 1,000-lineage renewal storm, zero downtime of apache2 under
// load with graceful reloads against restarts, start-up at scale, and the
// Go micro-benchmarks of validation and the signal path (via benchstat).
//
// It runs the real binary (-bin) on private dbus-daemons configured like the
// system bus with the shipped policy, as root, in a directory under
// /var/lib that it removes at the end. Every comparison runs both sides
// alternately in the same run; ratios are the figure, absolute times depend
// on the machine and on whatever else runs on it.
//
// Usage (from the module root; `make bench` does this):
//
//	go run ./bench -bin bin/certbus -results bench/RESULTS.md
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin         string
	results     string
	only        string
	keep        bool
	pairs       int
	calls       int
	storm       int
	scaleLin    int
	scaleApps   int
	rotations   int
	firstCap    time.Duration
	gobenchN    int
	gobenchTime string
	daemonEnv   string
	against     string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/certbus", "the certbus binary to measure (make build)")
	flag.StringVar(&o.results, "results", "", "Markdown file whose generated block (between the bench markers) gets the new table")
	flag.StringVar(&o.only, "only", "", "comma-separated sections to run: gobench,hook,accept,storm,startup,downtime (default all)")
	flag.BoolVar(&o.keep, "keep", false, "keep the sandbox directory and logs")
	flag.IntVar(&o.pairs, "pairs", 200, "alternating pairs for the hook comparison (issue 7 asks for 50 or more)")
	flag.IntVar(&o.calls, "calls", 1000, "Notify calls for accept latency")
	flag.IntVar(&o.storm, "storm", 1000, "lineages in the renewal storm")
	flag.IntVar(&o.scaleLin, "scale-lineages", 10000, "lineages for the start-up scan")
	flag.IntVar(&o.scaleApps, "scale-apps", 1000, "apps for the start-up scan")
	flag.IntVar(&o.rotations, "rotations", 10, "certificate rotations per reload mode under load")
	flag.DurationVar(&o.firstCap, "first-start-cap", 90*time.Second, "how long the first-start catch-up may run before the bench gives up on it")
	flag.IntVar(&o.gobenchN, "gobench-count", 6, "go test -count for the micro-benchmarks")
	flag.StringVar(&o.gobenchTime, "gobench-time", "150ms", "go test -benchtime for the micro-benchmarks")
	flag.StringVar(&o.daemonEnv, "daemon-env", "", "comma-separated K=V added to certbus serve's environment, e.g. GODEBUG=gctrace=1 (diagnosis)")
	flag.StringVar(&o.against, "against", "", "a certbus binary of another build: accept then runs its daemon beside this one, deploys alternating, and reports the two side by side")
	flag.Parse()
	if err := runAll(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: error: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func runAll(o options) error {
	repo, err := moduleRoot()
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build first)", o.bin, err)
	}
	for _, tool := range []string{"dbus-daemon", "gdbus"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: apt-get install dbus-daemon libglib2.0-bin", tool)
		}
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	on := func(name string) bool { return len(want) == 0 || want[name] }

	m := describeMachine(bin)
	start := time.Now()
	s, err := newSandbox(bin, repo, o.keep)
	if err != nil {
		return err
	}
	defer s.close()
	// An interrupted run still stops what it started and removes its tree.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			logf("interrupted: stopping what the bench started")
			s.close()
			os.Exit(130)
		}
	}()
	if o.daemonEnv != "" {
		s.daemonEnv = strings.Split(o.daemonEnv, ",")
	}

	var rows []row
	var failures []string
	section := func(name string, f func() ([]row, error)) {
		if !on(name) {
			return
		}
		logf("section %s", name)
		t0 := time.Now()
		r, err := f()
		if err != nil {
			logf("section %s failed: %v", name, err)
			failures = append(failures, name+": "+err.Error())
			rows = append(rows, row{Section: name, Measure: "FAILED: " + firstLine(err.Error()), Verdict: "MISSED"})
			return
		}
		rows = append(rows, r...)
		logf("section %s done in %s", name, time.Since(t0).Round(time.Second))
	}
	var stat string
	section("gobench", func() ([]row, error) {
		r, st, err := benchGo(repo, o)
		stat = st
		return r, err
	})
	section("hook", func() ([]row, error) {
		r, _, err := benchHook(s, o.pairs)
		return r, err
	})
	section("accept", func() ([]row, error) { return benchAccept(s, o.calls, o.against) })
	section("storm", func() ([]row, error) { return benchStorm(s, o.storm) })
	section("startup", func() ([]row, error) { return benchStartup(s, o) })
	section("downtime", func() ([]row, error) { return benchDowntime(s, o.rotations) })

	// Rows in section order, whatever order the sections ran in.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Section[0] < rows[j].Section[0] })
	m.took = time.Since(start)
	m.loadEnd = loadAvg()
	table := markdownTable(rows)
	fmt.Println()
	fmt.Print(table)
	fmt.Println()
	fmt.Print(m.footer())
	if o.results != "" {
		if err := updateResults(o.results, m, table, stat); err != nil {
			return err
		}
		logf("updated %s", o.results)
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d section(s) failed: %s", len(failures), strings.Join(failures, "; "))
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or above: run from the certbus module", dir)
		}
	}
}

// machine is what RESULTS.md records about where the figures came from.
type machine struct {
	date      time.Time
	cpus      int
	cpuModel  string
	mem       string
	kernel    string
	goVersion string
	certbus   string
	loadStart string
	loadEnd   string
	took      time.Duration
}

func describeMachine(bin string) *machine {
	m := &machine{date: time.Now().UTC(), cpus: runtime.NumCPU(), goVersion: runtime.Version(), loadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				var kb int64
				fmt.Sscan(f[1], &kb)
				m.mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		m.certbus = strings.TrimSpace(string(out))
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (m *machine) footer() string {
	return fmt.Sprintf("Run %s UTC on %d CPUs (%s), %s memory, Linux %s, %s; %s; took %s; load average %s at start, %s at end.\n"+
		"The machine is shared: other engineers' tests may have run at the same time. Ratios of alternating pairs are the figure; absolute times are noisy.\n",
		m.date.Format("2006-01-02 15:04"), m.cpus, m.cpuModel, m.mem, m.kernel, m.goVersion, m.certbus,
		m.took.Round(time.Second), m.loadStart, m.loadEnd)
}

const (
	beginMarker = "<!-- bench:begin (generated by `make bench`; edit outside the markers) -->"
	endMarker   = "<!-- bench:end -->"
)

// updateResults replaces the generated block of the results file, keeping
// the text around it; a file without the markers gets the block appended.
func updateResults(path string, m *machine, table, stat string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	block := beginMarker + "\n\n" + m.footer() + "\n" + table + "\n"
	if stat != "" {
		block += "<details><summary>benchstat (section 6)</summary>\n\n```\n" + stat + "```\n</details>\n\n"
	}
	block += endMarker
	text := string(old)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i >= 0 && j > i {
		text = text[:i] + block + text[j+len(endMarker):]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += block + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
