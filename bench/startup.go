package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/internal/applied"
	"github.com/certbus/certbus/internal/config"
)

var catchUpRE = regexp.MustCompile(`catch-up scan \{"lineages": (\d+), "missed": (\d+), "took": ([0-9.e+-]+)\}`)

// scan is what one start logged about its catch-up scan.
type scan struct {
	lineages, missed int
	took             time.Duration
}

// waitCatchUp reads the daemon's log until the catch-up scan line appears.
func waitCatchUp(e *daemonEnv, timeout time.Duration) (scan, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(e.logPath)
		if m := catchUpRE.FindSubmatch(b); m != nil {
			l, _ := strconv.Atoi(string(m[1]))
			mi, _ := strconv.Atoi(string(m[2]))
			f, _ := strconv.ParseFloat(string(m[3]), 64)
			return scan{l, mi, time.Duration(f * float64(time.Second))}, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return scan{}, fmt.Errorf("no catch-up scan line in the daemon log after %s", timeout)
}

// benchStartup measures `serve` to name acquired and the catch-up scan with
// many apps (one drop-in file each, as packages install them) and many
// lineages: alternately against a one-app, no-lineage setup; then the first
// start, where nothing was applied yet and everything is replayed.
func benchStartup(s *sandbox, o options) ([]row, error) {
	nApps, nLin := o.scaleApps, o.scaleLin
	per := max(nLin/nApps, 1)
	big, err := s.newDaemonEnv("startup-scale", "reload: {debounce: 2s}", "")
	if err != nil {
		return nil, err
	}
	small, err := s.newDaemonEnv("startup-small", "reload: {debounce: 2s}", `apps:
  - name: web
    type: service
    domains: ["*"]
    reload: {command: ["/bin/true"]}
`)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	ls, err := writeLineages(big.le, nLin)
	if err != nil {
		return nil, err
	}
	logf("startup: wrote %d lineages in %s", nLin, time.Since(t0).Round(time.Millisecond))
	// App j serves the names of lineages j*per .. j*per+per-1; the applied
	// state says every app has applied every one of them, so catch-up is a
	// pure scan.
	state := map[string]map[string]applied.Record{}
	for j := range nApps {
		name := fmt.Sprintf("app-%04d", j)
		var names []string
		state[name] = map[string]applied.Record{}
		for i := j * per; i < min((j+1)*per, nLin); i++ {
			for _, n := range ls[i].Names {
				names = append(names, n)
				state[name][n] = applied.Record{Fingerprint: ls[i].Fingerprint, NotAfter: ls[i].Leaf.Cert.NotAfter, Lineage: ls[i].Live, Time: time.Now().UTC()}
			}
		}
		y := fmt.Sprintf("apps:\n  - name: %s\n    type: service\n    domains: [%s]\n    reload: {command: [\"/bin/true\"]}\n", name, strings.Join(names, ", "))
		if err := os.WriteFile(filepath.Join(big.appsDir, name+".yaml"), []byte(y), 0o644); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(state)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(big.state, 0o700); err != nil {
		return nil, err
	}
	appliedPath := filepath.Join(big.state, "applied.json")
	if err := os.WriteFile(appliedPath, data, 0o600); err != nil {
		return nil, err
	}

	const starts = 5
	var bigName, smallName, bigScan []time.Duration
	var last scan
	for i := range starts {
		envs := []*daemonEnv{big, small}
		if i%2 == 1 {
			envs = []*daemonEnv{small, big}
		}
		for _, e := range envs {
			d, err := e.startDaemon()
			if err != nil {
				return nil, err
			}
			sc, err := waitCatchUp(e, 60*time.Second)
			e.stopDaemon()
			if err != nil {
				return nil, err
			}
			if e == big {
				if sc.missed != 0 {
					return nil, fmt.Errorf("catch-up found %d missed lineages with matching applied state", sc.missed)
				}
				bigName, bigScan, last = append(bigName, d), append(bigScan, sc.took), sc
			} else {
				smallName = append(smallName, d)
			}
		}
	}
	// Where the start-up time goes, in this process: the config with its
	// drop-ins, and the applied state.
	var loadCfg, loadApplied []time.Duration
	for range 5 {
		t0 := time.Now()
		if _, err := config.Load(big.config); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if _, err := applied.Open(big.state); err != nil {
			return nil, err
		}
		loadCfg, loadApplied = append(loadCfg, t1.Sub(t0)), append(loadApplied, time.Since(t1))
	}

	// Both daemons running: Notify(pre) to 1,000 apps against 1 app, and
	// the hook's own config read (1,000 drop-ins against one file), both
	// sides to the same one-app daemon so that only the read differs.
	if _, err := big.startDaemon(); err != nil {
		return nil, err
	}
	peakMatched, _ := vmHWM(big.daemon.pid())
	if _, err := small.startDaemon(); err != nil {
		big.stopDaemon()
		return nil, err
	}
	isoBig, b2bBig, isoSmall, b2bSmall, err := alternateNotify(big, small, 5)
	if err != nil {
		big.stopDaemon()
		small.stopDaemon()
		return nil, err
	}
	big.stopDaemon()
	var hookBig, hookSmall []time.Duration
	for i := range 30 {
		cmds := []*exec.Cmd{small.hookCmd("pre", "", nil), small.hookCmd("pre", "", nil)}
		cmds[0].Env = append(cmds[0].Env, "CERTBUS_CONFIG="+big.config)
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, k := range order {
			d, _, err := run(cmds[k])
			if err != nil {
				small.stopDaemon()
				return nil, err
			}
			if k == 0 {
				hookBig = append(hookBig, d)
			} else {
				hookSmall = append(hookSmall, d)
			}
		}
	}
	small.stopDaemon()

	// First start: no applied state, so every lineage is replayed to the
	// apps that serve it, as one pre..post run.
	if err := os.Remove(appliedPath); err != nil {
		return nil, err
	}
	firstName, err := big.startDaemon()
	if err != nil {
		return nil, err
	}
	firstStart := time.Now()
	first, err := waitCatchUp(big, 60*time.Second)
	if err != nil {
		big.stopDaemon()
		return nil, err
	}
	done, reloaded, accepted := false, 0, 0
	var firstTook time.Duration
	for time.Since(firstStart) < o.firstCap {
		b, _ := os.ReadFile(big.logPath)
		reloaded = strings.Count(string(b), " reloaded {")
		accepted = strings.Count(string(b), "event accepted")
		if reloaded >= nApps {
			done, firstTook = true, time.Since(firstStart)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ran := time.Since(firstStart)
	peakFirst, _ := vmHWM(big.daemon.pid())
	big.daemon.stop(5 * time.Second)
	firstFig := fmt.Sprintf("all %d apps reloaded in %.1f s", nApps, firstTook.Seconds())
	if !done {
		rate := float64(accepted) / ran.Seconds()
		firstFig = fmt.Sprintf("NOT DONE in %s: %d of %d replayed events accepted (%.1f/s, ~%.0f min for all), %d/%d apps reloaded",
			o.firstCap, accepted, first.missed+2, rate, float64(first.missed+2)/max(rate, 0.01)/60, reloaded, nApps)
	}
	logf("startup: matched scan %s (lineages %d); first start: scan %s, missed %d; %s; peak RSS matched %s, first %s",
		ms(median(bigScan)), last.lineages, ms(first.took), first.missed, firstFig, mib(peakMatched), mib(peakFirst))

	nameMed, scanMed := median(bigName), median(bigScan)
	return []row{
		{"5 startup", fmt.Sprintf("`serve` to name acquired, %d apps (drop-ins) + %d lineages, applied state matching (median of %d; baseline: 1 app, 0 lineages)", nApps, nLin, starts),
			ms(median(smallName)), ms(nameMed), ratioStr(pairedRatio(bigName, smallName)), "< 200 ms", verdict(nameMed < 200*time.Millisecond)},
		{"5 startup", fmt.Sprintf("  catch-up scan of %d lineages x %d apps (log `catch-up scan` took), matching: pure scan", nLin, nApps),
			"", ms(scanMed), "", "< 1 s", verdict(scanMed < time.Second)},
		{"5 startup", "  first start (no applied state): name acquired / catch-up scan",
			"", ms(firstName) + " / " + ms(first.took), "", "< 200 ms / < 1 s", verdict(firstName < 200*time.Millisecond && first.took < time.Second)},
		{"5 startup", fmt.Sprintf("  first start: replay of %d missed lineages to %d apps", first.missed, nApps), "", firstFig, "", "", ""},
		{"5 startup", "  daemon peak RSS, matching start / first start", "", mib(peakMatched) + " / " + mib(peakFirst), "", "", ""},
		{"5 startup", fmt.Sprintf("  part, in-process: config.Load of %d drop-ins / applied.Open of %d records", nApps, 2*nLin),
			"", ms(median(loadCfg)) + " / " + ms(median(loadApplied)), "", "", ""},
		{"5 startup", fmt.Sprintf("  Notify(pre) -> reply on an idle daemon, %d apps vs 1 app (median of 5 alternating)", nApps),
			ms(median(isoSmall)), ms(median(isoBig)), ratioStr(pairedRatio(isoBig, isoSmall)), "", ""},
		{"5 startup", fmt.Sprintf("  Notify(pre) right after the previous event's Wait returned, %d apps vs 1 app", nApps),
			ms(median(b2bSmall)), ms(median(b2bBig)), ratioStr(pairedRatio(b2bBig, b2bSmall)), "", ""},
		{"5 startup", fmt.Sprintf("  `certbus hook pre`, its config with %d app drop-ins vs 1 app (same daemon)", nApps),
			ms(median(hookSmall)), ms(median(hookBig)), ratioStr(pairedRatio(hookBig, hookSmall)), "", ""},
	}, nil
}

// alternateNotify times Notify(pre) on two running daemons, alternately.
// Each turn makes two calls: the first once the daemon's journal has been
// quiet for 200 ms (isolated), the second right after the first event's
// Wait returned (back to back, as certbot runs its hooks).
func alternateNotify(a, b *daemonEnv, pairs int) (isoA, b2bA, isoB, b2bB []time.Duration, err error) {
	call := func(conn *dbus.Conn) (time.Duration, error) {
		var id string
		t0 := time.Now()
		err := conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1").Call("org.certbus.Dispatcher1.Notify", 0,
			"pre", map[string]map[string]string{}).Store(&id)
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err = waitResults(ctx, conn, id, 60*time.Second)
		return d, err
	}
	for i := range pairs {
		envs := []*daemonEnv{a, b}
		if i%2 == 1 {
			envs = []*daemonEnv{b, a}
		}
		for _, e := range envs {
			conn, err := dbus.Connect(e.bus)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			quiet(filepath.Join(e.state, "journal.jsonl"), 200*time.Millisecond, 60*time.Second)
			iso, err := call(conn)
			var b2b time.Duration
			if err == nil {
				b2b, err = call(conn)
			}
			conn.Close()
			if err != nil {
				return nil, nil, nil, nil, err
			}
			if e == a {
				isoA, b2bA = append(isoA, iso), append(b2bA, b2b)
			} else {
				isoB, b2bB = append(isoB, iso), append(b2bB, b2b)
			}
		}
	}
	return isoA, b2bA, isoB, b2bB, nil
}

// quiet waits until the file has not been written for d.
func quiet(path string, d, limit time.Duration) {
	// The journal is padded while open: an entry changes its mtime, not
	// always its size.
	var last time.Time
	since := time.Now()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var mtime time.Time
		if fi, err := os.Stat(path); err == nil {
			mtime = fi.ModTime()
		}
		if !mtime.Equal(last) {
			last, since = mtime, time.Now()
		} else if time.Since(since) >= d {
			return
		}
	}
}
