// Package apps turns accepted certificate events into installed files and
// reloaded daemons. It holds the App contract (a type resolves a config entry
// into a Spec), the registry of app types, the reload methods every type can
// chain (systemd unit, command, signal), and the runner: domain filter,
// copy, coalesced reload, verify and rollback.
//
// It does not talk to D-Bus callers: events arrive through a signals.Signal
// and outcomes leave as signal results.
package apps

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certbus/certbus/internal/config"
)

// Type is a registered app type.
type Type struct {
	// Name is the `type:` of a config entry.
	Name string
	// Doc is one line for `certbus status` and the default config.
	Doc string
	// Build resolves an entry into a Spec: the type's defaults under what
	// the entry sets. Errors name the entry's file and line.
	Build func(a *config.App, env *Env) (*Spec, error)
}

var (
	regMu    sync.Mutex
	registry = map[string]Type{}
)

// Register adds an app type; it is meant for init() and panics on a
// duplicate name.
func Register(t Type) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[t.Name]; dup {
		panic("apps: type registered twice: " + t.Name)
	}
	registry[t.Name] = t
}

// Types lists the registered type names, sorted.
func Types() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func lookup(name string) (Type, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	t, ok := registry[name]
	return t, ok
}

// UnitController runs systemd jobs (internal/systemd implements it over
// D-Bus). mode is one of config.ModeRestart, ModeReload, ModeReloadOrRestart.
type UnitController interface {
	Run(ctx context.Context, unit string, mode string) error
}

// Env is what the daemon gives app types.
type Env struct {
	LetsencryptDir string
	Reload         config.Reload
	Log            *zap.Logger
	// Units returns the shared systemd controller, connecting on first use.
	Units func(ctx context.Context) (UnitController, error)
}

// Spec is a resolved app: everything the runner needs.
type Spec struct {
	Name string
	Type string
	// All is true for domains ["*"].
	All bool
	// Domains are the names the app serves (lower-case; "*.x" patterns
	// match one label).
	Domains []string
	// Discover, when set, re-reads the app's domains from its daemon's
	// config; it is called at build time and again before each event.
	Discover func() ([]string, error)
	// exact and wild index Domains so that matching an event costs one map
	// look-up per domain, however many domains an app serves.
	exact, wild map[string]bool
	domMu       sync.RWMutex
	Copy        *CopySpec
	// Reloaders is the chain, gentlest first; a failed reload or a failed
	// verification moves to the next.
	Reloaders []Reloader
	Verify    *VerifySpec
	// RepeatAfter, when set with Verify, is how long a reload method gets
	// to have the new leaf served before the runner runs that method once
	// more, then verifies as usual (Apache: see apps/apache). 0: never.
	RepeatAfter time.Duration
	Timeout     time.Duration
	Debounce    time.Duration
	MaxDelay    time.Duration
}

// CopySpec says where the app's own copies go. Paths may hold {domain}.
// Equal paths make one file: the key, then the full chain.
type CopySpec struct {
	Certificate string // gets the full chain
	PrivateKey  string
	UID, GID    int
	KeyMode     os.FileMode
	CertMode    os.FileMode
}

// VerifySpec is the endpoint that must serve the new leaf after a reload.
type VerifySpec struct {
	Address    string
	ServerName string // may hold {domain}
	StartTLS   string
}

// RunInfo tells a reloader what it reloads for.
type RunInfo struct {
	EventID   string
	Operation string
	Domains   []string
}

// Reloader is one way to make a daemon pick up its certificate.
type Reloader interface {
	// Name is short and shown in results ("systemd reload apache2.service").
	Name() string
	Reload(ctx context.Context, run RunInfo) error
}

// Defaults is what a type supplies under a config entry.
type Defaults struct {
	Domains  []string
	Discover func() ([]string, error)
	Copy     *config.Copy
	Reload   *config.AppReload
	Verify   *config.Verify
}

// Build resolves an entry with its type's Build.
func Build(a *config.App, env *Env) (*Spec, error) {
	t, ok := lookup(a.Type)
	if !ok {
		return nil, a.Pos.Errorf("app %q: unknown type %q (known: %s)", a.Name, a.Type, strings.Join(Types(), ", "))
	}
	return t.Build(a, env)
}

// BuildCommon applies the common keys of a over the type's defaults d.
// Types call it from their Build after decoding their options.
func BuildCommon(a *config.App, env *Env, d Defaults) (*Spec, error) {
	s := &Spec{
		Name:     a.Name,
		Type:     a.Type,
		Timeout:  time.Duration(env.Reload.Timeout),
		Debounce: time.Duration(env.Reload.Debounce),
		MaxDelay: time.Duration(env.Reload.MaxDelay),
		Discover: d.Discover,
	}
	domains := a.Domains
	if domains == nil {
		domains = d.Domains
	}
	if a.Domains != nil {
		s.Discover = nil // the user's list wins over discovery
	}
	if domains == nil && s.Discover == nil {
		return nil, a.Pos.Errorf("app %q: no domains: set domains: [\"*\"] or a list", a.Name)
	}
	s.setDomains(domains)
	if s.Discover != nil {
		if found, err := s.Discover(); err != nil {
			env.Log.Warn("domain discovery failed; the app gets no events until it works", zap.String("app", a.Name), zap.Error(err))
		} else {
			s.setDomains(found)
		}
	}
	c := mergeCopy(d.Copy, a.Copy)
	if c != nil {
		cs, err := resolveCopy(a, c)
		if err != nil {
			return nil, err
		}
		s.Copy = cs
	}
	r := mergeReload(d.Reload, a.Reload)
	if r != nil {
		if r.Timeout != 0 {
			s.Timeout = time.Duration(r.Timeout)
		}
		mode := r.Mode
		if mode == "" {
			mode = config.ModeReloadOrRestart
		}
		for _, u := range r.Units {
			s.Reloaders = append(s.Reloaders, &UnitReloader{Unit: u, Mode: mode, Units: env.Units})
		}
		if len(r.Command) > 0 {
			s.Reloaders = append(s.Reloaders, &CommandReloader{Argv: r.Command})
		}
	}
	v := d.Verify
	if a.Verify != nil {
		v = a.Verify
	}
	if v != nil && v.Address != "" {
		s.Verify = &VerifySpec{Address: v.Address, ServerName: v.ServerName, StartTLS: v.StartTLS}
		if s.Verify.ServerName == "" {
			s.Verify.ServerName = "{domain}"
		}
	}
	return s, nil
}

func (s *Spec) setDomains(list []string) {
	s.domMu.Lock()
	defer s.domMu.Unlock()
	s.All, s.Domains = false, nil
	s.exact, s.wild = map[string]bool{}, map[string]bool{}
	for _, d := range list {
		if d == "*" {
			s.All = true
			continue
		}
		d = strings.ToLower(d)
		s.Domains = append(s.Domains, d)
		s.exact[d] = true
		if strings.HasPrefix(d, "*.") {
			s.wild[d[1:]] = true
		}
	}
}

// Rediscover refreshes the domains of an app that discovers them.
func (s *Spec) Rediscover() error {
	if s.Discover == nil {
		return nil
	}
	found, err := s.Discover()
	if err != nil {
		return err
	}
	s.setDomains(found)
	return nil
}

// DomainList returns the app's domains ("*" for all).
func (s *Spec) DomainList() []string {
	s.domMu.RLock()
	defer s.domMu.RUnlock()
	if s.All {
		return []string{"*"}
	}
	return append([]string(nil), s.Domains...)
}

// mergeCopy overlays the user's copy keys on the type's.
func mergeCopy(def, user *config.Copy) *config.Copy {
	if def == nil && user == nil {
		return nil
	}
	out := config.Copy{}
	if def != nil {
		out = *def
	}
	if user != nil {
		if user.Certificate != "" {
			out.Certificate = user.Certificate
		}
		if user.PrivateKey != "" {
			out.PrivateKey = user.PrivateKey
		}
		if user.Owner != "" {
			out.Owner = user.Owner
		}
		if user.Group != "" {
			out.Group = user.Group
		}
		if user.KeyMode != "" {
			out.KeyMode = user.KeyMode
		}
	}
	return &out
}

// mergeReload: a user's units or command replaces the type's method; a
// user's mode or timeout alone adjusts it.
func mergeReload(def, user *config.AppReload) *config.AppReload {
	if def == nil && user == nil {
		return nil
	}
	out := config.AppReload{}
	if def != nil {
		out = *def
	}
	if user != nil {
		if len(user.Units) > 0 || len(user.Command) > 0 {
			out.Units, out.Command = user.Units, user.Command
		}
		if user.Mode != "" {
			out.Mode = user.Mode
		}
		if user.Timeout != 0 {
			out.Timeout = user.Timeout
		}
	}
	return &out
}

func resolveCopy(a *config.App, c *config.Copy) (*CopySpec, error) {
	if c.Certificate == "" && c.PrivateKey == "" {
		return nil, a.Pos.Errorf("app %q: copy needs certificate and/or private_key (type %s has no default paths)", a.Name, a.Type)
	}
	cs := &CopySpec{Certificate: c.Certificate, PrivateKey: c.PrivateKey, KeyMode: 0o600, CertMode: 0o644}
	if c.KeyMode == "0640" || c.KeyMode == "640" {
		cs.KeyMode = 0o640
	}
	owner, group := c.Owner, c.Group
	if owner == "" {
		owner = "root"
	}
	if group == "" {
		group = "root"
	}
	uid, err := lookupID(owner, user.Lookup, func(u *user.User) string { return u.Uid })
	if err != nil {
		return nil, a.Pos.Errorf("app %q: copy.owner: %v (create the user or set owner)", a.Name, err)
	}
	gid, err := lookupID(group, func(n string) (*user.Group, error) { return user.LookupGroup(n) }, func(g *user.Group) string { return g.Gid })
	if err != nil {
		return nil, a.Pos.Errorf("app %q: copy.group: %v (create the group or set group)", a.Name, err)
	}
	cs.UID, cs.GID = uid, gid
	return cs, nil
}

func lookupID[T any](name string, find func(string) (*T, error), id func(*T) string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	v, err := find(name)
	if err != nil {
		return 0, fmt.Errorf("unknown %q", name)
	}
	return strconv.Atoi(id(v))
}

// Serves reports whether the app wants domain d (lower-case).
// A pattern "*.x" matches one label under x.
func (s *Spec) Serves(d string) bool {
	s.domMu.RLock()
	defer s.domMu.RUnlock()
	if s.All || s.exact[d] {
		return true
	}
	if !strings.HasPrefix(d, "*.") {
		if i := strings.IndexByte(d, '.'); i > 0 && s.wild[d[i:]] {
			return true
		}
	}
	return false
}

// ExpandPath fills {domain} in a path template; a wildcard's "*" becomes
// "_" so the path stays a plain name.
func ExpandPath(tmpl, domain string) string {
	return strings.ReplaceAll(tmpl, "{domain}", strings.ReplaceAll(domain, "*", "_"))
}

// PathOption is one path-valued option of a type: where it is decoded and
// its default.
type PathOption struct {
	Key     string // the key under options:, for messages
	Value   *string
	Default string
}

// PathOptions fills each empty path option with its default and refuses a
// relative one (no PATH lookup, no working directory), naming the entry's
// file and line.
func PathOptions(a *config.App, opts ...PathOption) error {
	for _, o := range opts {
		if *o.Value == "" {
			*o.Value = o.Default
		}
		if !filepath.IsAbs(*o.Value) {
			return a.Pos.Errorf("app %q: options.%s %q must be an absolute path", a.Name, o.Key, *o.Value)
		}
	}
	return nil
}
