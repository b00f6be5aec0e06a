package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/internal/journal"
)

// counterScript is every app's reload command in the storm: it only counts.
const counterScript = `#!/bin/sh
echo "$1 $CERTBUS_OPERATION $(echo $CERTBUS_DOMAINS | wc -w)" >> "$(dirname "$0")/reloads"
`

var eventIDRE = regexp.MustCompile(`event (\S+) delivered`)

// benchStorm runs one certbot-shaped renewal of n lineages through the
// hook binary: `hook pre`, n × `hook deploy` (certbot runs deploy hooks one
// after another), `hook post`; then waits for the post's results.
// Three apps: web serves everything and copies, mail serves half the
// lineages and reads them in place, chat serves none of them.
func benchStorm(s *sandbox, n int) ([]row, error) {
	dir, err := s.dir("storm-files")
	if err != nil {
		return nil, err
	}
	counter := filepath.Join(dir, "reload.sh")
	if err := os.WriteFile(counter, []byte(counterScript), 0o755); err != nil {
		return nil, err
	}
	dest := filepath.Join(dir, "copies")
	var mailDomains []string
	for i := 0; i < n; i += 2 {
		mailDomains = append(mailDomains, lineageNames(i)...)
	}
	appsYAML := fmt.Sprintf(`apps:
  - name: web
    type: service
    domains: ["*"]
    copy: {certificate: "%[1]s/{domain}/fullchain.pem", private_key: "%[1]s/{domain}/privkey.pem"}
    reload: {command: ["%[2]s", "web"]}
  - name: mail
    type: service
    domains: ["%[3]s"]
    reload: {command: ["%[2]s", "mail"]}
  - name: chat
    type: service
    domains: ["*.elsewhere.test"]
    reload: {command: ["%[2]s", "chat"]}
`, dest, counter, strings.Join(mailDomains, `", "`))
	e, err := s.newDaemonEnv("storm", "reload: {debounce: 2s, max_delay: 10m, timeout: 60s}", appsYAML)
	if err != nil {
		return nil, err
	}
	// The daemon starts on an empty letsencrypt dir, so that its catch-up
	// has nothing to replay: certbot writes the lineages during its run.
	if _, err := e.startDaemon(); err != nil {
		return nil, err
	}
	defer e.stopDaemon()
	// Its catch-up scan must be over before certbot's run begins, or it
	// replays the lineages it sees being written.
	if sc, err := waitCatchUp(e, 30*time.Second); err != nil {
		return nil, err
	} else if sc.lineages != 0 {
		return nil, fmt.Errorf("catch-up scan saw %d lineages in an empty letsencrypt dir", sc.lineages)
	}
	idle, _ := vmHWM(e.daemon.pid())
	t0 := time.Now()
	ls, err := writeLineages(e.le, n)
	if err != nil {
		return nil, err
	}
	logf("storm: wrote %d lineages in %s", n, time.Since(t0).Round(time.Millisecond))

	start := time.Now()
	if _, _, err := run(e.hookCmd("pre", "", nil)); err != nil {
		return nil, err
	}
	depStart := time.Now()
	var hookTimes []time.Duration
	for _, l := range ls {
		d, _, err := run(e.hookCmd("deploy", l.Live, l.Names))
		if err != nil {
			return nil, err
		}
		hookTimes = append(hookTimes, d)
	}
	depTook := time.Since(depStart)
	postStart := time.Now()
	_, out, err := run(e.hookCmd("post", "", nil))
	if err != nil {
		return nil, err
	}
	postReturned := time.Since(postStart)
	m := eventIDRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no event id in `hook post` output: %q", out)
	}
	conn, err := dbus.Connect(e.bus)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := waitResults(ctx, conn, m[1], 5*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("wait for post %s: %w", m[1], err)
	}
	postDone := time.Since(postStart)
	lastReload := lastReloadAt(e.logPath)
	backlog, err := handledAfter(filepath.Join(e.state, "journal.jsonl"), m[1], "web")
	if err != nil {
		return nil, err
	}
	total := time.Since(start)
	peak, _ := vmHWM(e.daemon.pid())

	counts := map[string]int{}
	if b, err := os.ReadFile(filepath.Join(dir, "reloads")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				counts[f[0]]++
			}
		}
	}
	var status []string
	for _, r := range res {
		status = append(status, r.App+"="+r.Status)
	}
	copies, _ := filepath.Glob(filepath.Join(dest, "*", "fullchain.pem"))
	logf("storm: post results %s; %d web copies; hook deploy p50/p99 %s/%s; `hook post` returned after %s",
		strings.Join(status, " "), len(copies), ms(median(hookTimes)), ms(percentile(hookTimes, 99)), ms(postReturned))
	rate := float64(n) / depTook.Seconds()
	exact := counts["web"] == 1 && counts["mail"] == 1 && counts["chat"] == 0
	return []row{
		{"3 storm", fmt.Sprintf("%d lineages, pre..post through `certbus hook`: deploys per second", n), "", fmt.Sprintf("%.0f /s", rate), "", "", ""},
		{"3 storm", "  total, `hook pre` to every reload done", "", fmt.Sprintf("%.1f s", total.Seconds()), "", "", ""},
		{"3 storm", "  reloads per app web / mail / chat (certbot --deploy-hook: one per lineage)",
			fmt.Sprintf("%d / %d / 0", n, n/2), fmt.Sprintf("%d / %d / %d", counts["web"], counts["mail"], counts["chat"]), "", "1 / 1 / 0", verdict(exact)},
		{"3 storm", "  `hook post` start to every reload done (Wait on the post event)", "", ms(postDone), "", "", ""},
		{"3 storm", "  of which: `hook post` start to the last reload command run (daemon log) / recording applied state after it", "",
			ms(lastReload.Sub(postStart)) + " / " + ms(postStart.Add(postDone).Sub(lastReload)), "", "", ""},
		{"3 storm", "  the copying app's backlog: deploys `web` installed after the post event was accepted (journal order)", "", fmt.Sprint(backlog), "", "", ""},
		{"3 storm", "  daemon peak RSS (VmHWM; idle after start: " + mib(idle) + ")", "", mib(peak), "", "<= 30 MiB", verdict(peak <= 30<<20)},
	}, nil
}

// handledAfter counts the deploys app finished after the event postID was
// journaled: their result lines come after the post's own line. It is the
// backlog the app still had when the post arrived (each deploy's copies are
// installed before its result), which the post's reload waits for.
func handledAfter(path, postID, app string) (int, error) {
	// The rotated file first: a storm may fill the journal past the post.
	var text []byte
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		text = append(text, b...)
	}
	seen, n := false, 0
	for _, line := range strings.Split(string(text), "\n") {
		var en journal.Entry
		if json.Unmarshal([]byte(line), &en) != nil {
			continue
		}
		if en.ID == postID && en.Operation != "" {
			seen = true
			continue
		}
		// A deploy's own result is pending (reload after post); the
		// post's reload later turns each to ok, in lines not counted.
		if seen && en.Operation == "" && en.Results[app].Status == "pending" {
			n++
		}
	}
	if !seen {
		return 0, fmt.Errorf("the post event %s is not in %s", postID, path)
	}
	return n, nil
}

var reloadedRE = regexp.MustCompile(`(?m)^(\S+) info apps\.\S+ reloaded `)

// lastReloadAt is the time of the last "reloaded" line in the daemon's log.
func lastReloadAt(logPath string) time.Time {
	b, _ := os.ReadFile(logPath)
	var last time.Time
	for _, m := range reloadedRE.FindAllSubmatch(b, -1) {
		if t, err := time.Parse("2006-01-02T15:04:05.000Z0700", string(m[1])); err == nil && t.After(last) {
			last = t
		}
	}
	return last
}
