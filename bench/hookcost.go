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
	"github.com/certbus/certbus/bus/wire"
	"github.com/certbus/certbus/hooks"
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

// hookResult is what section 1 found.
type hookResult struct {
	lean, full, script, baseline, version, ping []time.Duration
	oneWrite, godbus                            []time.Duration
	ratio                                       float64
	initLean, initFull                          time.Duration
	initTop                                     []string
	depsFull, depsLean                          int
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
	// certbus's own renewal-hooks script, as install-hooks writes it.
	ours := filepath.Join(e.dir, hooks.ScriptName)
	if err := os.WriteFile(ours, hooks.Script(s.bin, "deploy"), 0o755); err != nil {
		return nil, nil, err
	}
	leanBin := filepath.Join(filepath.Dir(s.bin), hooks.HookBinary)
	if _, err := os.Stat(leanBin); err != nil {
		return nil, nil, fmt.Errorf("%v (make build puts it beside %s)", err, s.bin)
	}
	if _, err := e.startDaemon(); err != nil {
		return nil, nil, err
	}
	defer e.stopDaemon()

	certbotEnv := func(c *exec.Cmd) *exec.Cmd {
		c.Env = append(baseEnv(), "CERTBUS_BUS="+e.bus, "CERTBUS_CONFIG="+e.config,
			"RENEWED_LINEAGE="+l.Live, "RENEWED_DOMAINS="+strings.Join(l.Names, " "))
		return c
	}
	// certbus-hook as the hook scripts exec it: with their environment.
	leanCmd := func() *exec.Cmd {
		c := certbotEnv(exec.Command(leanBin, "deploy"))
		c.Env = append(c.Env, hooks.HookEnv)
		return c
	}
	fullCmd := func() *exec.Cmd { return e.hookCmd("deploy", l.Live, l.Names) }
	scriptCmd := func() *exec.Cmd { return certbotEnv(exec.Command(ours)) }
	baselineCmd := func() *exec.Cmd { return certbotEnv(exec.Command(script)) }
	// Parts of the cost, for the breakdown: the certbus binary's start-up
	// alone, and a gdbus process that reaches the daemon but asks it
	// nothing.
	versionCmd := func() *exec.Cmd { c := exec.Command(s.bin, "version"); c.Env = baseEnv(); return c }
	pingCmd := func() *exec.Cmd {
		c := exec.Command("gdbus", "call", "--address", e.bus, "--dest", "org.certbus.Dispatcher1", "--object-path",
			"/org/certbus/Dispatcher1", "--timeout", "10", "--method", "org.freedesktop.DBus.Peer.Ping")
		c.Env = baseEnv()
		return c
	}
	// Warm the page cache and the daemon.
	for range 5 {
		for _, c := range []*exec.Cmd{leanCmd(), fullCmd(), baselineCmd()} {
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
		{leanCmd, "delivered", &r.lean},
		{baselineCmd, "('", &r.baseline},
		{fullCmd, "delivered", &r.full},
		{scriptCmd, "delivered", &r.script},
		{versionCmd, "", &r.version},
		{pingCmd, "()", &r.ping},
	}
	for i := range pairs {
		// Rotate the order so that no side always runs first.
		for k := range sides {
			sd := sides[(i+k)%len(sides)]
			d, out, err := run(sd.cmd())
			if err != nil {
				return nil, nil, err
			}
			if sd.want != "" && !strings.Contains(out, sd.want) {
				return nil, nil, fmt.Errorf("unexpected output: %q", out)
			}
			*sd.into = append(*sd.into, d)
		}
	}
	r.ratio = pairedRatio(r.lean, r.baseline)
	if err := hookPhases(e, l, pairs, r); err != nil {
		return nil, nil, err
	}
	r.initLean, r.initTop = initTrace(leanCmd)
	r.initFull, _ = initTrace(fullCmd)
	r.depsFull, r.depsLean = depCounts(s.repo)
	rows := []row{
		{"1 hook", fmt.Sprintf("deploy hook, whole process, median of %d alternating pairs: `certbus-hook deploy` as the hook scripts exec it (%s)", pairs, hooks.HookEnv),
			ms(median(r.baseline)) + " (bash+gdbus)", ms(median(r.lean)), ratioStr(r.ratio), "ratio <= 0.4", verdict(r.ratio <= 0.4)},
		{"1 hook", "  derived: each side's own cost, the in-process pipelined call (the daemon's work, the same for both) taken off",
			ms(median(r.baseline) - median(r.oneWrite)), ms(median(r.lean) - median(r.oneWrite)),
			ratioStr(float64(median(r.lean)-median(r.oneWrite)) / float64(median(r.baseline)-median(r.oneWrite))), "", ""},
		{"1 hook", "  the same event through `certbus hook deploy` (the whole certbus binary)",
			ms(median(r.baseline)), ms(median(r.full)), ratioStr(pairedRatio(r.full, r.baseline)), "", ""},
		{"1 hook", "  script to script, as certbot runs them: renewal-hooks/deploy/50-certbus (sh, GOMAXPROCS=1 exec certbus-hook)",
			ms(median(r.baseline)), ms(median(r.script)), ratioStr(pairedRatio(r.script, r.baseline)), "", ""},
		{"1 hook", "  part: start-up, no Notify (`certbus version` vs gdbus Peer.Ping to the daemon)",
			ms(median(r.ping)), ms(median(r.version)), ratioStr(pairedRatio(r.version, r.ping)), "", ""},
		{"1 hook", "  part: in-process Notify(deploy) on a new connection: godbus Dial+call (baseline) vs pipelined (bus/wire)",
			ms(median(r.godbus)), ms(median(r.oneWrite)), ratioStr(pairedRatio(r.oneWrite, r.godbus)), "", ""},
		{"1 hook", "  part: Go package inits (GODEBUG=inittrace=1, median of 9): certbus hook (baseline) vs certbus-hook",
			ms(r.initFull), ms(r.initLean), "", "", ""},
		{"1 hook", "  packages linked: certbus (baseline) vs certbus-hook", strconv.Itoa(r.depsFull), strconv.Itoa(r.depsLean), "", "", ""},
	}
	logf("hook: certbus-hook p10/p50/p90 %s/%s/%s, baseline %s/%s/%s; init top: %s", ms(percentile(r.lean, 10)), ms(median(r.lean)),
		ms(percentile(r.lean, 90)), ms(percentile(r.baseline, 10)), ms(median(r.baseline)), ms(percentile(r.baseline, 90)),
		strings.Join(r.initTop, ", "))
	return rows, r, nil
}

var initLine = regexp.MustCompile(`^init (\S+) @\S+ ms, ([0-9.]+) ms clock`)

// initTrace runs cmd with GODEBUG=inittrace=1 and returns the median
// total of package init clock time and the costliest packages of the
// median run.
func initTrace(cmd func() *exec.Cmd) (time.Duration, []string) {
	type trace struct {
		total time.Duration
		top   []string
	}
	var runs []trace
	for range 9 {
		c := cmd()
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

// depCounts counts the packages linked into cmd/certbus and cmd/certbus-hook.
func depCounts(repo string) (int, int) {
	count := func(pkg string) int {
		c := exec.Command("go", "list", "-deps", pkg)
		c.Dir = repo
		out, err := c.Output()
		if err != nil {
			return -1
		}
		return len(strings.Fields(string(out)))
	}
	return count("./cmd/certbus"), count("./cmd/certbus-hook")
}

// hookPhases times, inside this process, the call a hook makes on a new
// connection: through a godbus connection (Dial, then the call) and in one
// write (bus/wire, what both hook commands use), alternately.
func hookPhases(e *daemonEnv, l lineage, n int, r *hookResult) error {
	domains := hooks.LineageDomains(l.Live, l.Names)
	ctx := context.Background()
	for range n {
		t0 := time.Now()
		c, err := bus.Dial(e.bus)
		if err != nil {
			return err
		}
		if _, err := c.Notify(ctx, "deploy", domains); err != nil {
			c.Close()
			return err
		}
		c.Close()
		t1 := time.Now()
		if _, err := wire.Notify(ctx, e.bus, "deploy", domains); err != nil {
			return err
		}
		r.godbus = append(r.godbus, t1.Sub(t0))
		r.oneWrite = append(r.oneWrite, time.Since(t1))
	}
	return nil
}
