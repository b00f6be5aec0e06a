// Package apache is the app type for Apache httpd as Debian ships it.
//
// Apache reads certificates straight from the certbot lineages (it starts
// as root), so the type copies nothing. It finds its domains in Apache's
// own configuration: the ServerName and ServerAlias names of every
// <VirtualHost> whose SSLCertificateFile lies in a lineage under
// letsencrypt_dir, read again before each event, so `domains` may be left
// out. When no virtual host uses a lineage the app serves no domain and
// skips every event (it does not fall back to "*": reloading Apache for a
// certificate it does not use would prove nothing and verifying it would
// fail). A `domains` list in the entry replaces discovery.
//
// Reload: `apache2.service` reload over systemd (its ExecReload is
// `apachectl graceful`: children finish their requests, nothing is
// dropped). Before any reload method, the unit's or a reload.command, the
// type runs Apache's config test itself, so a broken configuration is
// reported as failed with Apache's own message and Apache is never told to
// reload, let alone restart, into it.
//
// Verify: when every such virtual host is reached at one address (e.g.
// <VirtualHost *:443>, reached at 127.0.0.1:443), a TLS handshake there
// with SNI = the domain must present the new leaf; an explicit `verify:`
// replaces it. The endpoint is found when the config loads (start,
// SIGHUP); the domains before every event.
//
// A graceful restart can leave Apache accepting no connection for up to a
// second: the parent tells the old children to stop, rereads its config,
// and then starts new children only as it reaps old ones, which it checks
// once, then after a one-second sleep that a child's exit does not cut
// short (httpd's ap_wait_or_timeout; the parent has no SIGCHLD handler).
// When the old children have not exited by that first check, new
// connections wait in the listen queue for that second. So when the new
// leaf is not served repeat_reload_after (100ms) after the reload, the
// type runs the reload once more: a second graceful wakes the parent, which
// starts the new children at once (measured on Debian's 2.4, 20 rotations
// under load: new certificate served p99 1.07 s -> 0.19 s, no request
// failed). Set it to 0s to turn that off.
//
// Options (`options:` in the app's entry):
//
//	config_root: /etc/apache2      # ServerRoot; discovery reads <config_root>/apache2.conf and its includes
//	configtest: [/usr/sbin/apache2ctl, configtest]   # argv, run before every reload
//	repeat_reload_after: 100ms     # see above; needs a verify endpoint; 0s: never; not with reload.mode restart
//
// apache2ctl tests /etc/apache2 (it reads APACHE_CONFDIR from its
// environment, which certbus does not set): with another config_root, set
// configtest too, e.g. [/usr/sbin/apache2, -d, ROOT, -f, ROOT/apache2.conf, -t].
package apache

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

// Defaults of the options and the reload.
const (
	DefaultConfigRoot = "/etc/apache2"
	DefaultUnit       = "apache2.service"
)

// DefaultConfigTest is the config test run before a reload.
var DefaultConfigTest = []string{"/usr/sbin/apache2ctl", "configtest"}

// DefaultRepeatReloadAfter is how long a graceful gets to have the new leaf
// served before it is sent once more (see the package doc).
const DefaultRepeatReloadAfter = 100 * time.Millisecond

type options struct {
	ConfigRoot        string          `yaml:"config_root"`
	ConfigTest        []string        `yaml:"configtest"`
	RepeatReloadAfter config.Duration `yaml:"repeat_reload_after"`
}

func init() {
	apps.Register(apps.Type{
		Name:  "apache",
		Doc:   "Apache httpd: domains from its vhosts, no copy, config test then graceful reload of apache2.service",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{ConfigRoot: DefaultConfigRoot, ConfigTest: DefaultConfigTest, RepeatReloadAfter: config.Duration(DefaultRepeatReloadAfter)}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(o.ConfigRoot) {
		return nil, a.Pos.Errorf("app %q: options.config_root %q is not an absolute path", a.Name, o.ConfigRoot)
	}
	if len(o.ConfigTest) == 0 || !filepath.IsAbs(o.ConfigTest[0]) {
		return nil, a.Pos.Errorf("app %q: options.configtest must be an argv whose first element is an absolute path", a.Name)
	}
	disc := &discoverer{root: filepath.Clean(o.ConfigRoot), le: env.LetsencryptDir}
	s, err := apps.BuildCommon(a, env, apps.Defaults{
		Discover: disc.domains,
		Reload:   &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeReload},
	})
	if err != nil {
		return nil, err
	}
	if a.Verify == nil {
		d, err := disc.last()
		switch {
		case err != nil:
			// BuildCommon has logged it when discovery applies.
		case d.Endpoint != "":
			s.Verify = &apps.VerifySpec{Address: d.Endpoint, ServerName: "{domain}"}
		case len(d.Domains) > 0:
			env.Log.Info("no default verify endpoint; set verify.address to check what Apache serves",
				zap.String("app", a.Name), zap.String("why", d.Why))
		}
	}
	if a.Reload == nil || a.Reload.Mode != config.ModeRestart {
		// A restart has no accept gap to cut short, and a second one
		// would only drop connections again.
		s.RepeatAfter = time.Duration(o.RepeatReloadAfter)
	}
	test := &apps.CommandReloader{Argv: o.ConfigTest, Label: "apache config test (" + strings.Join(o.ConfigTest, " ") + ")"}
	for i, r := range s.Reloaders {
		s.Reloaders[i] = &configTested{test: test, next: r}
	}
	if s.Discover != nil {
		if d, err := disc.last(); err == nil && len(d.Domains) == 0 {
			env.Log.Warn("no Apache virtual host uses a certificate under letsencrypt_dir; the app skips every event until one does",
				zap.String("app", a.Name), zap.String("config_root", o.ConfigRoot), zap.String("letsencrypt_dir", env.LetsencryptDir))
		}
	}
	return s, nil
}

// discoverer reads Apache's config on demand and keeps the last result for
// the verify endpoint.
type discoverer struct {
	root, le string
	mu       sync.Mutex
	done     bool
	result   Discovered
	err      error
}

func (d *discoverer) domains() ([]string, error) {
	r, err := d.scan()
	if err != nil {
		return nil, err
	}
	return r.Domains, nil
}

func (d *discoverer) scan() (Discovered, error) {
	var r Discovered
	c, err := Parse(d.root)
	if err == nil {
		r = c.Discover(d.le)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done, d.result, d.err = true, r, err
	return r, err
}

// last is the latest scan, scanning once if discovery has not run (a
// `domains` list in the entry turns discovery off, not the endpoint).
func (d *discoverer) last() (Discovered, error) {
	d.mu.Lock()
	done := d.done
	r, err := d.result, d.err
	d.mu.Unlock()
	if !done {
		return d.scan()
	}
	return r, err
}

// configTested runs Apache's config test before a reload method: a broken
// configuration fails with Apache's message and the method never runs.
// (apachectl graceful tests too, but through systemd its message would be
// lost, and a reload.command need not test at all.)
type configTested struct {
	test *apps.CommandReloader
	next apps.Reloader

	mu       sync.Mutex
	testedOK string // the event whose config test passed last
}

// Name is the method's.
func (c *configTested) Name() string { return c.next.Name() }

// Reload tests the configuration, then reloads. The runner's second
// graceful for the same event (repeat_reload_after) skips the test: it
// passed a moment ago, and the point is to wake Apache at once.
func (c *configTested) Reload(ctx context.Context, run apps.RunInfo) error {
	c.mu.Lock()
	tested := run.EventID != "" && c.testedOK == run.EventID
	c.mu.Unlock()
	if !tested {
		if err := c.test.Reload(ctx, run); err != nil {
			return fmt.Errorf("not reloaded: %w", err)
		}
		c.mu.Lock()
		c.testedOK = run.EventID
		c.mu.Unlock()
	}
	return c.next.Reload(ctx, run)
}
