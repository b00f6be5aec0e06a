package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/internal/testcerts"
)

// apacheConf is a minimal Apache httpd on a loopback port: event MPM, one
// SSL virtual host whose certificate is read straight from the certbot
// lineage (as Debian's certbot --apache sets it up), a static page.
const apacheConf = `ServerRoot "%[1]s"
ServerName bench.test
Listen 127.0.0.1:%[2]d
PidFile %[1]s/run/apache2.pid
DefaultRuntimeDir %[1]s/run
Mutex file:%[1]s/run default
ErrorLog %[1]s/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
StartServers 2
ServerLimit 16
ThreadsPerChild 25
MaxRequestWorkers 200
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
GracefulShutdownTimeout 10
DocumentRoot %[1]s/htdocs
<Directory %[1]s/htdocs>
    Require all granted
</Directory>
<VirtualHost 127.0.0.1:%[2]d>
    ServerName bench.test
    SSLEngine on
    SSLCertificateFile %[3]s/fullchain.pem
    SSLCertificateKeyFile %[3]s/privkey.pem
</VirtualHost>
`

// apacheReload is the app's reload.command: Apache's own -k graceful or
// -k restart, chosen per rotation by the bench so that both modes
// alternate in one run.
const apacheReload = `#!/bin/sh
date +%%s%%N >> %[1]s/reload-times
exec /usr/sbin/apache2 -d %[1]s -f %[1]s/apache2.conf -k "$(cat %[1]s/mode)"
`

// request is one load-generator request.
type request struct {
	start     time.Time
	dur       time.Duration
	keepAlive bool
	failed    bool
	retried   bool // keep-alive connection closed under it; retried on a new one
}

// loadGen runs closed-loop HTTPS clients at full rate: half open a new TLS
// connection per request (each a full handshake, no session resumption, so
// each shows the certificate served at that moment), half keep one
// connection alive.
type loadGen struct {
	addr string
	stop atomic.Bool
	wg   sync.WaitGroup

	mu   sync.Mutex
	reqs []request
	// seen maps a leaf fingerprint to the first time a handshake presented it.
	seen map[string]time.Time
	errs map[string]int
}

func newLoadGen(addr string) *loadGen {
	return &loadGen{addr: addr, seen: map[string]time.Time{}, errs: map[string]int{}}
}

var tlsConf = &tls.Config{ServerName: "bench.test", InsecureSkipVerify: true} // the fingerprint is checked instead

func (g *loadGen) dial() (*tls.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", g.addr, tlsConf)
	if err != nil {
		return nil, err
	}
	if pc := c.ConnectionState().PeerCertificates; len(pc) > 0 {
		sum := sha256.Sum256(pc[0].Raw)
		fp := hex.EncodeToString(sum[:])
		now := time.Now()
		g.mu.Lock()
		if _, ok := g.seen[fp]; !ok {
			g.seen[fp] = now
		}
		g.mu.Unlock()
	}
	return c, nil
}

func (g *loadGen) firstSeen(fp string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.seen[fp]
	return t, ok
}

const getRequest = "GET /index.html HTTP/1.1\r\nHost: bench.test\r\n%s\r\n"

// roundTrip sends one request on c and reads the whole response. sent
// reports whether any response byte arrived (a keep-alive connection the
// server closed between requests fails with none).
func roundTrip(c *tls.Conn, br *bufio.Reader, close bool) (got bool, err error) {
	hdr := ""
	if close {
		hdr = "Connection: close\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, getRequest, hdr); err != nil {
		return false, err
	}
	if _, err := br.Peek(1); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return true, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return true, err
}

func (g *loadGen) record(r request, err error) {
	g.mu.Lock()
	g.reqs = append(g.reqs, r)
	if err != nil {
		k := err.Error()
		if i := strings.LastIndex(k, ": "); i >= 0 {
			k = k[i+2:]
		}
		g.errs[k]++
	}
	g.mu.Unlock()
}

func (g *loadGen) newConnWorker() {
	defer g.wg.Done()
	for !g.stop.Load() {
		t0 := time.Now()
		c, err := g.dial()
		if err == nil {
			_, err = roundTrip(c, bufio.NewReader(c), true)
			c.Close()
		}
		g.record(request{start: t0, dur: time.Since(t0), failed: err != nil}, err)
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

func (g *loadGen) keepAliveWorker() {
	defer g.wg.Done()
	var c *tls.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for !g.stop.Load() {
		t0 := time.Now()
		r := request{start: t0, keepAlive: true}
		var err error
		reused := c != nil
		if c == nil {
			if c, err = g.dial(); err == nil {
				br = bufio.NewReader(c)
			}
		}
		var got bool
		if err == nil {
			got, err = roundTrip(c, br, false)
			if err != nil && reused && !got {
				// The server closed the idle connection as the request went
				// out: every HTTP client retries that on a new connection.
				r.retried = true
				c.Close()
				if c, err = g.dial(); err == nil {
					br = bufio.NewReader(c)
					_, err = roundTrip(c, br, false)
				}
			}
		}
		if err != nil && c != nil {
			c.Close()
			c = nil
		}
		r.dur, r.failed = time.Since(t0), err != nil
		g.record(r, err)
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

func (g *loadGen) start(newConn, keepAlive int) {
	for range newConn {
		g.wg.Add(1)
		go g.newConnWorker()
	}
	for range keepAlive {
		g.wg.Add(1)
		go g.keepAliveWorker()
	}
}

func (g *loadGen) finish() {
	g.stop.Store(true)
	g.wg.Wait()
}

// window is a span of the run and what happened in it.
type window struct {
	from, to time.Time
	mode     string // "" before any rotation
}

// windowStats summarises the requests that started in any of ws.
type windowStats struct {
	n, failed, retried int
	durs               []time.Duration
}

func (g *loadGen) stats(ws []window) windowStats {
	var s windowStats
	for _, r := range g.reqs {
		for _, w := range ws {
			if !r.start.Before(w.from) && r.start.Before(w.to) {
				s.n++
				if r.failed {
					s.failed++
				}
				if r.retried {
					s.retried++
				}
				s.durs = append(s.durs, r.dur)
				break
			}
		}
	}
	return s
}

// benchDowntime rotates the certificate of an Apache virtual host under
// load, through the hooks and a certbus `apache` app, alternating Apache's
// graceful restart (what certbus's apache type asks for) with a full
// restart (what FreedomBox does for most daemons), rotations times each.
func benchDowntime(s *sandbox, rotations int) ([]row, error) {
	if _, err := os.Stat("/usr/sbin/apache2"); err != nil {
		return nil, fmt.Errorf("apache2 is missing: apt-get install apache2")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	adir, err := s.dir("apache")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"run", "htdocs"} {
		if err := os.MkdirAll(filepath.Join(adir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(adir, "htdocs", "index.html"), []byte(strings.Repeat("certbus bench\n", 64)), 0o644); err != nil {
		return nil, err
	}
	reload := filepath.Join(adir, "reload.sh")
	if err := os.WriteFile(reload, []byte(fmt.Sprintf(apacheReload, adir)), 0o755); err != nil {
		return nil, err
	}
	modeFile := filepath.Join(adir, "mode")
	if err := os.WriteFile(modeFile, []byte("graceful"), 0o644); err != nil {
		return nil, err
	}
	// The apache type's second graceful (repeat_reload_after, see
	// apps/apache) is certbus's; the restart baseline, FreedomBox's way,
	// runs without it: the config switches with the mode (SIGHUP).
	appsYAML := func(repeat string) string {
		return fmt.Sprintf(`apps:
  - name: apache
    type: apache
    options:
      config_root: %[1]s
      configtest: [/usr/sbin/apache2, -d, %[1]s, -f, %[1]s/apache2.conf, -t]
      repeat_reload_after: %[3]s
    reload: {command: ["%[2]s"]}
`, adir, reload, repeat)
	}
	repeatFor := map[string]string{"graceful": "100ms", "restart": "0s"}
	const reloadYAML = "reload: {debounce: 2s, timeout: 30s}"
	e, err := s.newDaemonEnv("downtime", reloadYAML, appsYAML(repeatFor["graceful"]))
	if err != nil {
		return nil, err
	}
	mainConfig, err := os.ReadFile(e.config)
	if err != nil {
		return nil, err
	}
	configMode, configReloads := "graceful", 0
	switchConfig := func(mode string) error {
		if mode == configMode {
			return nil
		}
		body := strings.Replace(string(mainConfig), appsYAML(repeatFor["graceful"]), appsYAML(repeatFor[mode]), 1)
		if err := os.WriteFile(e.config, []byte(body), 0o644); err != nil {
			return err
		}
		if err := e.daemon.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return err
		}
		configReloads++
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if b, _ := os.ReadFile(e.logPath); strings.Count(string(b), "config reloaded") >= configReloads {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the daemon did not reload its config for %s rotations:\n%s", mode, tail(e.logPath, 2000))
			}
		}
		configMode = mode
		return nil
	}
	const name = "bench.test"
	leaves := make([]*testcerts.Leaf, 2*rotations+1)
	for i := range leaves {
		if leaves[i], err = testcerts.Shared().Issue([]string{name}, testcerts.Options{Key: testcerts.ECDSA}); err != nil {
			return nil, err
		}
	}
	live, err := testcerts.WriteLineage(e.le, name, 1, leaves[0])
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(adir, "apache2.conf"), []byte(fmt.Sprintf(apacheConf, adir, port, live)), 0o644); err != nil {
		return nil, err
	}
	ap := exec.Command("/usr/sbin/apache2", "-d", adir, "-f", filepath.Join(adir, "apache2.conf"), "-DFOREGROUND")
	ap.Env = baseEnv()
	apache, err := s.start("apache2", ap, filepath.Join(adir, "apache2.out"))
	if err != nil {
		return nil, err
	}
	defer apache.stop(10 * time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	g := newLoadGen(addr)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := g.dial(); err == nil {
			c.Close()
			break
		}
		if apache.exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("apache2 did not serve TLS on %s: %s", addr, tail(filepath.Join(adir, "error.log"), 1500)+tail(apache.log, 1500))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := e.startDaemon(); err != nil {
		return nil, err
	}
	defer e.stopDaemon()
	conn, err := dbus.Connect(e.bus)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	g.start(4, 4)
	defer g.finish()
	before := window{from: time.Now()}
	time.Sleep(3 * time.Second)
	before.to = time.Now()

	var windows []window
	// toServe splits into certbus's part (hook post returned -> the reload
	// command started, config test included) and Apache's (-> served).
	toServe, toCommand, commandToServe := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
	repeats := map[string]int{} // reload commands run more than once a rotation
	var results []string
	for k := range 2 * rotations {
		mode := "graceful"
		if k%2 == 1 {
			mode = "restart"
		}
		if err := os.WriteFile(modeFile, []byte(mode), 0o644); err != nil {
			return nil, err
		}
		if err := switchConfig(mode); err != nil {
			return nil, err
		}
		leaf := leaves[k+1]
		if _, err := testcerts.WriteLineage(e.le, name, k+2, leaf); err != nil {
			return nil, err
		}
		w := window{from: time.Now(), mode: mode}
		if _, _, err := run(e.hookCmd("pre", "", nil)); err != nil {
			return nil, err
		}
		if _, _, err := run(e.hookCmd("deploy", live, []string{name})); err != nil {
			return nil, err
		}
		_, out, err := run(e.hookCmd("post", "", nil))
		if err != nil {
			return nil, err
		}
		posted := time.Now()
		m := eventIDRE.FindStringSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("no event id in `hook post` output: %q", out)
		}
		var served time.Time
		for {
			if t, ok := g.firstSeen(leaf.Fingerprint); ok {
				served = t
				break
			}
			if time.Since(posted) > 20*time.Second {
				return nil, fmt.Errorf("rotation %d (%s): the new certificate was not served 20s after `hook post`; apache log:\n%s\ncertbus log:\n%s",
					k, mode, tail(filepath.Join(adir, "error.log"), 1500), tail(e.logPath, 3000))
			}
			time.Sleep(time.Millisecond)
		}
		toServe[mode] = append(toServe[mode], served.Sub(posted))
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		res, err := waitResults(ctx, conn, m[1], 40*time.Second)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("wait for post: %w", err)
		}
		if ts := reloadTimes(filepath.Join(adir, "reload-times"), posted); len(ts) > 0 {
			toCommand[mode] = append(toCommand[mode], ts[0].Sub(posted))
			commandToServe[mode] = append(commandToServe[mode], served.Sub(ts[0]))
			repeats[mode] += len(ts) - 1
		}
		for _, r := range res {
			if r.Status != "ok" {
				results = append(results, fmt.Sprintf("%s %s: %s", mode, r.Status, r.Message))
			}
		}
		time.Sleep(time.Second)
		w.to = time.Now()
		windows = append(windows, w)
	}
	g.finish()

	pick := func(mode string) []window {
		var out []window
		for _, w := range windows {
			if w.mode == mode {
				out = append(out, w)
			}
		}
		return out
	}
	b := g.stats([]window{before})
	gr, rs := g.stats(pick("graceful")), g.stats(pick("restart"))
	total := len(g.reqs)
	dur := time.Since(before.from)
	var errKinds []string
	for k, n := range g.errs {
		errKinds = append(errKinds, fmt.Sprintf("%q x%d", k, n))
	}
	logf("downtime: %d requests (%.0f/s); before p50/p99 %s/%s; graceful n=%d failed=%d retried=%d p99=%s; restart n=%d failed=%d retried=%d p99=%s; errors: %s; non-ok results: %v",
		total, float64(total)/dur.Seconds(), ms(median(b.durs)), ms(percentile(b.durs, 99)),
		gr.n, gr.failed, gr.retried, ms(percentile(gr.durs, 99)), rs.n, rs.failed, rs.retried, ms(percentile(rs.durs, 99)),
		strings.Join(errKinds, ", "), results)
	if len(results) > 0 {
		return nil, errors.New("the apache app did not report ok: " + strings.Join(results, "; "))
	}
	round := func(ds []time.Duration) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = d.Round(time.Millisecond)
		}
		return out
	}
	for _, mode := range []string{"graceful", "restart"} {
		logf("downtime: %s, per rotation: hook post -> served %v; -> reload command %v; reload command -> served %v", mode,
			round(toServe[mode]), round(toCommand[mode]), round(commandToServe[mode]))
	}
	gp99, rp99, bp99 := percentile(gr.durs, 99), percentile(rs.durs, 99), percentile(b.durs, 99)
	gServe, rServe := toServe["graceful"], toServe["restart"]
	return []row{
		{"4 downtime", fmt.Sprintf("apache2 under load (4 new-conn + 4 keep-alive clients, %.0f req/s), %d rotations each: failed requests, restart (baseline) vs graceful",
			float64(total)/dur.Seconds(), rotations), strconv.Itoa(rs.failed), strconv.Itoa(gr.failed), "", "0", verdict(gr.failed == 0)},
		{"4 downtime", "  keep-alive requests the server closed under the client (retried on a new connection, as HTTP clients do)",
			strconv.Itoa(rs.retried), strconv.Itoa(gr.retried), "", "", ""},
		{"4 downtime", fmt.Sprintf("  p99 latency during rotations (before rotations: %s)", ms(bp99)),
			ms(rp99), ms(gp99), ratioStr(float64(gp99) / float64(rp99)), "", ""},
		{"4 downtime", "  `hook post` returned -> new certificate served, p50 / p99",
			ms(median(rServe)) + " / " + ms(percentile(rServe, 99)), ms(median(gServe)) + " / " + ms(percentile(gServe, 99)),
			ratioStr(pairedRatio(gServe, rServe)), "p99 <= 1 s", verdict(percentile(gServe, 99) <= time.Second)},
		{"4 downtime", "  of which certbus: `hook post` returned -> first reload command started (config test included), p50 / p99",
			ms(median(toCommand["restart"])) + " / " + ms(percentile(toCommand["restart"], 99)),
			ms(median(toCommand["graceful"])) + " / " + ms(percentile(toCommand["graceful"], 99)), "", "", ""},
		{"4 downtime", "  of which Apache: first reload command started -> new certificate served, p50 / p99",
			ms(median(commandToServe["restart"])) + " / " + ms(percentile(commandToServe["restart"], 99)),
			ms(median(commandToServe["graceful"])) + " / " + ms(percentile(commandToServe["graceful"], 99)), "", "", ""},
		{"4 downtime", "  rotations where the reload ran twice (apache's repeat_reload_after: 0s for restart, 100ms for graceful)",
			strconv.Itoa(repeats["restart"]), strconv.Itoa(repeats["graceful"]), "", "", ""},
	}, nil
}

// reloadTimes reads the timestamps the reload command wrote after since.
func reloadTimes(path string, since time.Time) []time.Time {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, f := range strings.Fields(string(b)) {
		ns, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue
		}
		if t := time.Unix(0, ns); t.After(since) {
			out = append(out, t)
		}
	}
	return out
}
