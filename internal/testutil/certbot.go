package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Certbot runs the real certbot (Debian's 2.1.0) against a Pebble, with its
// configuration, work and log directories in a t.TempDir(), so lineages
// live in ConfigDir/live/<name> and ConfigDir/archive/<name>, renewal
// configs in ConfigDir/renewal, and directory hooks in
// ConfigDir/renewal-hooks/{pre,deploy,post}. ConfigDir is what certbus calls
// letsencrypt_dir.
//
// Certificates are issued with the manual authenticator and "true" as its
// auth hook: with PEBBLE_VA_ALWAYS_VALID no challenge needs answering, and
// unlike --standalone it binds no port. The choice is saved in each renewal
// config, so renew needs no authenticator flags. Measured here: about 2.7s
// per certonly (0.5s of Python start-up, then certbot's fixed one-second
// sleeps before polling the authorizations and the order) and 2.7s for a
// renew of two lineages (pebble reuses the valid authorizations, so only the
// order polls remain).
//
// certbot creates ConfigDir/renewal-hooks/{pre,deploy,post} on its first
// run; directory hooks put there (by certbus install-hooks, say) run on
// Renew.
type Certbot struct {
	// Pebble is the ACME server certbot talks to.
	Pebble *Pebble
	// ConfigDir, WorkDir and LogsDir are passed as --config-dir,
	// --work-dir and --logs-dir.
	ConfigDir, WorkDir, LogsDir string
	// Env is added to certbot's environment (and so its hooks') on every
	// run, after the test process's own and REQUESTS_CA_BUNDLE, e.g.
	// CERTBUS_BUS=<address> so installed hooks reach the test's daemon.
	Env []string
	// Timeout bounds one certbot run; NewCertbot sets two minutes.
	Timeout time.Duration

	xdgConfig string // an empty XDG_CONFIG_HOME: no per-user cli.ini
}

// hostCLIConfig is the cli.ini certbot always reads, whatever its flags
// say. Debian's sets max-log-backups = 0 (logrotate's job), which makes
// letsencrypt.log grow across runs; Run overrides that on the command line.
const hostCLIConfig = "/etc/letsencrypt/cli.ini"

// debianCLIKeys are the settings of Debian's stock cli.ini; any other
// setting there applies to the tests' certbot runs too, so NewCertbot
// mentions it.
var debianCLIKeys = map[string]bool{"max-log-backups": true, "preconfigured-renewal": true}

// NewCertbot returns a Certbot with fresh directories that uses p. The
// account is registered (without an email) by the first run.
func NewCertbot(t testing.TB, p *Pebble) *Certbot {
	t.Helper()
	Need(t, "certbot")
	dir := t.TempDir()
	c := &Certbot{
		Pebble:    p,
		ConfigDir: filepath.Join(dir, "config"),
		WorkDir:   filepath.Join(dir, "work"),
		LogsDir:   filepath.Join(dir, "logs"),
		Timeout:   2 * time.Minute,
		xdgConfig: filepath.Join(dir, "xdg-config"),
	}
	if b, err := os.ReadFile(hostCLIConfig); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			key, _, _ := strings.Cut(line, "=")
			key = strings.TrimSpace(key)
			if line != "" && line[0] != '#' && line[0] != ';' && !debianCLIKeys[key] {
				t.Logf("warning: %s sets %q; certbot applies it to this test's runs too", hostCLIConfig, line)
			}
		}
	}
	return c
}

// Lineage returns the live directory of the lineage name,
// ConfigDir/live/<name> (certbot's RENEWED_LINEAGE).
func (c *Certbot) Lineage(name string) string {
	return filepath.Join(c.ConfigDir, "live", name)
}

// Run runs certbot with args after the flags every run needs (directories,
// --server, non-interactive, terms agreed, no email, one log file per run)
// and returns its combined output. It does not fail the test; a non-zero
// exit is the error. certbot still reads /etc/letsencrypt/cli.ini (no flag
// turns that off); NewCertbot warns about settings there beyond Debian's.
func (c *Certbot) Run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	argv := append([]string{
		"--config-dir", c.ConfigDir,
		"--work-dir", c.WorkDir,
		"--logs-dir", c.LogsDir,
		"--server", c.Pebble.DirectoryURL,
		"--non-interactive",
		"--agree-tos",
		"--register-unsafely-without-email",
		// One letsencrypt.log per run, whatever the host's cli.ini says.
		"--max-log-backups", "1000",
	}, args...)
	// The context kills exactly certbot's PID on timeout; WaitDelay keeps a
	// hook it left behind from holding the output pipe open forever.
	cmd := exec.CommandContext(ctx, "certbot", argv...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+c.Pebble.CABundle, "XDG_CONFIG_HOME="+c.xdgConfig)
	cmd.Env = append(cmd.Env, c.Env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("certbot timed out after %v: %w", c.Timeout, err)
	}
	return string(out), err
}

// Certonly issues a certificate for domains (at least one) as the lineage
// name, and fails the test if certbot fails. In certbot 2.1.0 a first
// issuance runs no deploy hook and no directory pre/post hook.
func (c *Certbot) Certonly(t testing.TB, name string, domains ...string) {
	t.Helper()
	if len(domains) == 0 {
		t.Fatalf("certbot certonly %s: no domains", name)
	}
	authHook, err := LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"certonly", "--cert-name", name,
		"--manual", "--preferred-challenges", "http-01", "--manual-auth-hook", authHook}
	for _, d := range domains {
		args = append(args, "-d", d)
	}
	if out, err := c.Run(t, args...); err != nil {
		t.Fatalf("certbot certonly %s: %v\n%s\nletsencrypt.log:\n%s", name, err, out, tail(c.logFile(), 8192))
	}
}

// Renew runs `certbot renew --force-renewal --no-random-sleep-on-renew`
// with extra appended, fails the test if certbot fails, and returns its
// output. Every lineage renews (pebble's certificates are never due), so
// pre and post hooks run once and deploy hooks once per lineage. A hook's
// failure does not fail certbot; look for it with HookErrors(c.LogText(t)).
func (c *Certbot) Renew(t testing.TB, extra ...string) string {
	t.Helper()
	args := append([]string{"renew", "--force-renewal", "--no-random-sleep-on-renew"}, extra...)
	out, err := c.Run(t, args...)
	if err != nil {
		t.Fatalf("certbot renew: %v\n%s\nletsencrypt.log:\n%s", err, out, tail(c.logFile(), 8192))
	}
	return out
}

func (c *Certbot) logFile() string { return filepath.Join(c.LogsDir, "letsencrypt.log") }

// LogText returns LogsDir/letsencrypt.log, the debug log of the latest
// certbot run (certbot rotates older ones to letsencrypt.log.1, .2, ...).
func (c *Certbot) LogText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		t.Fatalf("certbot log: %v", err)
	}
	return string(b)
}

var (
	// A record of certbot's log file starts with its FILE_FMT prefix,
	// "%(asctime)s:%(levelname)s:%(name)s:"; a message may span lines.
	logRecord = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:[A-Z]+:[^:]*:`)
	// certbot.compat.misc.execute_command_status
	hookRunning = regexp.MustCompile(`^Running ([a-z-]+) command: (.*)`)
	// certbot.display.ops.report_executed_command, run with
	// command_name "Hook '<name>'"
	hookExit   = regexp.MustCompile(`^Hook '([a-z-]+)' reported error code (\d+)`)
	hookStderr = regexp.MustCompile(`(?s)^Hook '([a-z-]+)' ran with error output:\n(.*)`)
)

// HookErrors returns one line per hook run that certbot's log shows going
// wrong: a non-zero exit ("Hook 'deploy-hook' reported error code N") or
// anything written to stderr ("... ran with error output:"), which certbot
// 2.1.0 only logs as warnings while the run still succeeds. Each line names
// the hook type, its command, the exit code and the stderr text, e.g.
//
//	deploy-hook /x/renewal-hooks/deploy/50-certbus: exit 3: certbus: error: ...
//
// Hooks that ran cleanly are not listed; no hook errors gives nil.
func HookErrors(logText string) []string {
	type hookRun struct {
		kind, cmd, stderr string
		exit              int
	}
	var runs []*hookRun
	var cur *hookRun
	// forKind returns the run being reported on, or a new one without a
	// command if the text did not show its "Running" line.
	forKind := func(kind string) *hookRun {
		if cur == nil || cur.kind != kind {
			cur = &hookRun{kind: kind}
			runs = append(runs, cur)
		}
		return cur
	}
	starts := logRecord.FindAllStringIndex(logText, -1)
	for i, s := range starts {
		end := len(logText)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		msg := strings.TrimRight(logText[s[1]:end], "\n")
		if m := hookRunning.FindStringSubmatch(msg); m != nil {
			cur = &hookRun{kind: m[1], cmd: m[2]}
			runs = append(runs, cur)
		} else if m := hookExit.FindStringSubmatch(msg); m != nil {
			forKind(m[1]).exit, _ = strconv.Atoi(m[2])
		} else if m := hookStderr.FindStringSubmatch(msg); m != nil {
			lines := strings.Split(strings.TrimSpace(m[2]), "\n")
			for j, l := range lines {
				lines[j] = strings.TrimSpace(l)
			}
			forKind(m[1]).stderr = strings.Join(lines, " | ")
		}
	}
	var errs []string
	for _, r := range runs {
		if r.exit == 0 && r.stderr == "" {
			continue
		}
		line := r.kind
		if r.cmd != "" {
			line += " " + r.cmd
		}
		line += fmt.Sprintf(": exit %d", r.exit)
		if r.stderr != "" {
			line += ": " + r.stderr
		}
		errs = append(errs, line)
	}
	return errs
}
