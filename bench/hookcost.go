package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certbus/certbus/bus"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/config"
)

// freedomboxHook is FreedomBox's deploy hook shape (renewal-hooks/deploy,
// bash: an echo, then one `gdbus call` with a 10 s timeout), aimed at
// certbus's Notify on the bench's private bus so that both sides deliver
// the same event to the same daemon. Its dictionary is built from certbot's
// environment in bash, as `certbus hook deploy` builds it in Go.
const freedomboxHook = `#!/bin/bash
echo "deploy hook: ${RENEWED_LINEAGE}"
dict=""
for d in ${RENEWED_DOMAINS}; do
	l=${RENEWED_LINEAGE}
	dict="${dict}${dict:+, }'${d}': {'certificate': '${l}/cert.pem', 'private_key': '${l}/privkey.pem', 'fullchain': '${l}/fullchain.pem', 'chain': '${l}/chain.pem', 'lineage': '${l}'}"
done
gdbus call --address "${CERTBUS_BUS}" --dest org.certbus.Dispatcher1 --object-path /org/certbus/Dispatcher1 \
	--timeout 10 --method org.certbus.Dispatcher1.Notify deploy "{${dict}}"
`

// hookResult is what section 1 found, also used by the summary.
type hookResult struct {
	certbus, baseline, version, ping, lean []time.Duration
	cfgLoad, dial, notify                  []time.Duration
	ratio, leanRatio                       float64
	initClock                              time.Duration
	initTop                                []string
	depsAll, depsHook                      int
}

func benchHook(s *sandbox, pairs int) ([]row, *hookResult, error) {
	e, err := s.newDaemonEnv("hook", "reload: {debounce: 2s}", `apps:
  - name: web
    type: service
    domains: ["*"]
`)
	if err != nil {
		return nil, nil, err
	}
	ls, err := writeLineages(e.le, 1)
	if err != nil {
		return nil, nil, err
	}
	l := ls[0]
	script := filepath.Join(e.dir, "50-freedombox-shape")
	if err := os.WriteFile(script, []byte(freedomboxHook), 0o755); err != nil {
		return nil, nil, err
	}
	if _, err := e.startDaemon(); err != nil {
		return nil, nil, err
	}
	defer e.stopDaemon()

	certbusCmd := func() *exec.Cmd { return e.hookCmd("deploy", l.Live, l.Names) }
	baselineCmd := func() *exec.Cmd {
		c := exec.Command(script)
		c.Env = append(baseEnv(), "CERTBUS_BUS="+e.bus, "RENEWED_LINEAGE="+l.Live, "RENEWED_DOMAINS="+strings.Join(l.Names, " "))
		return c
	}
	// Parts of the cost, for the breakdown: the Go binary's start-up alone,
	// and a gdbus process that reaches the daemon but asks it nothing.
	versionCmd := func() *exec.Cmd { c := exec.Command(s.bin, "version"); c.Env = baseEnv(); return c }
	pingCmd := func() *exec.Cmd {
		c := exec.Command("gdbus", "call", "--address", e.bus, "--dest", "org.certbus.Dispatcher1", "--object-path",
			"/org/certbus/Dispatcher1", "--timeout", "10", "--method", "org.freedesktop.DBus.Peer.Ping")
		c.Env = baseEnv()
		return c
	}
	lean := filepath.Join(e.dir, "leanhook")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", lean, "./bench/leanhook")
	build.Dir, build.Env = s.repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("build leanhook: %v: %s", err, out)
	}
	leanCmd := func() *exec.Cmd {
		c := exec.Command(lean)
		c.Env = append(baseEnv(), "CERTBUS_BUS="+e.bus, "RENEWED_LINEAGE="+l.Live, "RENEWED_DOMAINS="+strings.Join(l.Names, " "))
		return c
	}
	check := func(out string, want string) error {
		if !strings.Contains(out, want) {
			return fmt.Errorf("unexpected output: %q", out)
		}
		return nil
	}
	// Warm the page cache and the daemon.
	for range 5 {
		for _, c := range []*exec.Cmd{certbusCmd(), baselineCmd()} {
			if _, _, err := run(c); err != nil {
				return nil, nil, err
			}
		}
	}
	r := &hookResult{}
	type side struct {
		cmd  func() *exec.Cmd
		want string
		into *[]time.Duration
	}
	sides := []side{
		{certbusCmd, "delivered", &r.certbus},
		{baselineCmd, "('", &r.baseline},
		{versionCmd, "", &r.version},
		{pingCmd, "()", &r.ping},
		{leanCmd, "delivered", &r.lean},
	}
	for i := range pairs {
		// Rotate the order so that neither side always runs first.
		for k := range sides {
			sd := sides[(i+k)%len(sides)]
			d, out, err := run(sd.cmd())
			if err != nil {
				return nil, nil, err
			}
			if sd.want != "" {
				if err := check(out, sd.want); err != nil {
					return nil, nil, err
				}
			}
			*sd.into = append(*sd.into, d)
		}
	}
	r.ratio = pairedRatio(r.certbus, r.baseline)
	r.leanRatio = pairedRatio(r.lean, r.baseline)
	if err := hookPhases(e, l, pairs, r); err != nil {
		return nil, nil, err
	}
	r.initClock, r.initTop = initTrace(e, l)
	r.depsAll, r.depsHook = depCounts(s.repo)
	rows := []row{
		{"1 hook", fmt.Sprintf("deploy hook, whole process, median of %d alternating pairs", pairs),
			ms(median(r.baseline)) + " (bash+gdbus)", ms(median(r.certbus)), ratioStr(r.ratio), "ratio <= 0.4", verdict(r.ratio <= 0.4)},
		{"1 hook", "  part: start-up, no Notify (`certbus version` vs gdbus Peer.Ping to the daemon)",
			ms(median(r.ping)), ms(median(r.version)), ratioStr(pairedRatio(r.version, r.ping)), "", ""},
		{"1 hook", "  part: in-process config.Load / bus.Dial / Notify(deploy), medians",
			"", ms(median(r.cfgLoad)) + " / " + ms(median(r.dial)) + " / " + ms(median(r.notify)), "", "", ""},
		{"1 hook", "  prototype: bench/leanhook (env + godbus Notify only, 2.8 MB) vs bash+gdbus",
			ms(median(r.baseline)), ms(median(r.lean)), ratioStr(r.leanRatio), "ratio <= 0.4", verdict(r.leanRatio <= 0.4)},
		{"1 hook", "  part: Go package inits in `certbus hook deploy` (GODEBUG=inittrace=1, median of 9)",
			"", ms(r.initClock), "", "", ""},
		{"1 hook", "  packages linked into certbus / needed by hook, bus, config, cobra", "", fmt.Sprintf("%d / %d", r.depsAll, r.depsHook), "", "", ""},
	}
	logf("hook: certbus p10/p50/p90 %s/%s/%s, baseline %s/%s/%s; init top: %s", ms(percentile(r.certbus, 10)), ms(median(r.certbus)),
		ms(percentile(r.certbus, 90)), ms(percentile(r.baseline, 10)), ms(median(r.baseline)), ms(percentile(r.baseline, 90)),
		strings.Join(r.initTop, ", "))
	return rows, r, nil
}

var initLine = regexp.MustCompile(`^init (\S+) @\S+ ms, ([0-9.]+) ms clock`)

// initTrace runs the hook with GODEBUG=inittrace=1 and returns the median
// total of package init clock time and the costliest packages of the
// median run.
func initTrace(e *daemonEnv, l lineage) (time.Duration, []string) {
	type trace struct {
		total time.Duration
		top   []string
	}
	var runs []trace
	for range 9 {
		c := e.hookCmd("deploy", l.Live, l.Names)
		c.Env = append(c.Env, "GODEBUG=inittrace=1")
		_, out, err := run(c)
		if err != nil {
			continue
		}
		type pkg struct {
			name string
			d    time.Duration
		}
		var t trace
		var pkgs []pkg
		for _, line := range strings.Split(out, "\n") {
			m := initLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			f, _ := strconv.ParseFloat(m[2], 64)
			d := time.Duration(f * 1e6)
			t.total += d
			pkgs = append(pkgs, pkg{m[1], d})
		}
		sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].d > pkgs[j].d })
		for _, p := range pkgs[:min(4, len(pkgs))] {
			t.top = append(t.top, fmt.Sprintf("%s %s", p.name, ms(p.d)))
		}
		runs = append(runs, t)
	}
	if len(runs) == 0 {
		return 0, nil
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].total < runs[j].total })
	m := runs[len(runs)/2]
	return m.total, m.top
}

// depCounts counts the packages linked into cmd/certbus and those the hook
// path needs (hooks, the bus client, config, cobra).
func depCounts(repo string) (int, int) {
	count := func(pkgs ...string) int {
		c := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...)
		c.Dir = repo
		out, err := c.Output()
		if err != nil {
			return -1
		}
		return len(strings.Fields(string(out)))
	}
	return count("./cmd/certbus"), count("./hooks", "./bus", "./internal/config", "github.com/spf13/cobra")
}

// hookPhases times, inside this process, what `certbus hook deploy` does
// after start-up: load the config (for the spool's state_dir), dial the
// bus, call Notify.
func hookPhases(e *daemonEnv, l lineage, n int, r *hookResult) error {
	domains := hooks.LineageDomains(l.Live, l.Names)
	for range n {
		t0 := time.Now()
		if _, err := config.Load(e.config); err != nil {
			return err
		}
		t1 := time.Now()
		c, err := bus.Dial(e.bus)
		if err != nil {
			return err
		}
		t2 := time.Now()
		if _, err := c.Notify(context.Background(), "deploy", domains); err != nil {
			c.Close()
			return err
		}
		t3 := time.Now()
		c.Close()
		r.cfgLoad = append(r.cfgLoad, t1.Sub(t0))
		r.dial = append(r.dial, t2.Sub(t1))
		r.notify = append(r.notify, t3.Sub(t2))
	}
	return nil
}
