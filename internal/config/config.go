// Package config loads certbus.yaml and its drop-ins into structs, with every
// default and every check in one place and the file and line in every error.
// It knows the common keys of an app entry; a type's own options stay a YAML
// node that the type decodes with DecodeOptions.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/internal/certs"
)

// Defaults of DESIGN section 6.
const (
	DefaultPath           = "/etc/certbus/certbus.yaml"
	DefaultLetsencryptDir = "/etc/letsencrypt"
	DefaultStateDir       = "/var/lib/certbus"
	DefaultAppsDir        = "/etc/certbus/apps.d"
	DefaultDebounce       = 2 * time.Second
	DefaultMaxDelay       = 10 * time.Minute
	DefaultTimeout        = 60 * time.Second
)

// Duration is a time.Duration written as "2s", "10m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q (use e.g. 2s, 10m)", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: negative duration %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Pos is where something was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Errorf formats an error prefixed with the position.
func (p Pos) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", p, fmt.Sprintf(format, args...))
}

// Reload holds the global reload timing.
type Reload struct {
	Debounce Duration `yaml:"debounce"`
	MaxDelay Duration `yaml:"max_delay"`
	Timeout  Duration `yaml:"timeout"`
}

// Config is the whole configuration after defaults and checks.
type Config struct {
	File           string   `yaml:"-"`
	LetsencryptDir string   `yaml:"letsencrypt_dir"`
	StateDir       string   `yaml:"state_dir"`
	AppsDir        string   `yaml:"apps_dir"`
	SourceDirs     []string `yaml:"source_dirs"`
	AllowedGroups  []string `yaml:"allowed_groups"`
	AllowedUsers   []string `yaml:"allowed_users"`
	Reload         Reload   `yaml:"reload"`
	Apps           []App    `yaml:"apps"`
}

// Copy says where an app wants its own copy of the files.
type Copy struct {
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
	Owner       string `yaml:"owner"`
	Group       string `yaml:"group"`
	// KeyMode is the private key's mode, 0600 by default (0640 allowed for a
	// group that reads it).
	KeyMode string `yaml:"key_mode"`
}

// AppReload is how an app's daemon is told.
type AppReload struct {
	Units   []string `yaml:"units"`
	Mode    string   `yaml:"mode"`
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout"`
}

// Verify names the endpoint that must present the new certificate.
type Verify struct {
	Address    string `yaml:"address"`
	ServerName string `yaml:"server_name"`
	StartTLS   string `yaml:"starttls"`
}

// App is one entry of `apps:`.
type App struct {
	Name    string     `yaml:"name"`
	Type    string     `yaml:"type"`
	Domains []string   `yaml:"domains"`
	Copy    *Copy      `yaml:"copy"`
	Reload  *AppReload `yaml:"reload"`
	Verify  *Verify    `yaml:"verify"`
	Options yaml.Node  `yaml:"options"`
	Pos     Pos        `yaml:"-"`
}

// Reload modes: all of them act only on running units.
const (
	ModeRestart         = "restart"
	ModeReload          = "reload"
	ModeReloadOrRestart = "reload-or-restart"
)

// StartTLS protocols a verify endpoint may need.
var StartTLSProtocols = []string{"", "smtp", "imap", "xmpp", "postgres"}

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// Load reads path and the drop-ins of its apps_dir. A missing file is an
// error: the daemon refuses to run on a config it cannot see.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := c.loadDropIns(); err != nil {
		return nil, err
	}
	if err := c.checkApps(); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadMain reads only the main file (defaults applied, drop-ins not read):
// enough for a hook that needs state_dir.
func LoadMain(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes the main file and applies defaults; drop-ins are not read.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{File: file}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErr(file, err)
	}
	var doc *yaml.Node
	if len(root.Content) > 0 {
		doc = root.Content[0]
		if err := decodeStrict(file, doc, c); err != nil {
			return nil, err
		}
		if err := c.positions(file, doc); err != nil {
			return nil, err
		}
	}
	if err := c.defaults(); err != nil {
		// Name the line of the key at fault when the file has it.
		var ke *keyError
		if errors.As(err, &ke) && doc != nil {
			if n := keyNode(doc, ke.key); n != nil {
				return nil, Pos{file, n.Line}.Errorf("%s", ke.msg)
			}
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// keyError is a bad value of a top-level key (or "reload.x").
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.msg }

// keyNode finds the node of a top-level key, or of "parent.child".
func keyNode(doc *yaml.Node, key string) *yaml.Node {
	parent, child, nested := strings.Cut(key, ".")
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != parent {
			continue
		}
		if !nested {
			return doc.Content[i]
		}
		return keyNode(doc.Content[i+1], child)
	}
	return nil
}

func (c *Config) defaults() error {
	if c.LetsencryptDir == "" {
		c.LetsencryptDir = DefaultLetsencryptDir
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.AppsDir == "" {
		c.AppsDir = DefaultAppsDir
	}
	if c.AllowedGroups == nil {
		c.AllowedGroups = []string{"certbus"}
	}
	if c.Reload.Debounce == 0 {
		c.Reload.Debounce = Duration(DefaultDebounce)
	}
	if c.Reload.MaxDelay == 0 {
		c.Reload.MaxDelay = Duration(DefaultMaxDelay)
	}
	if c.Reload.Timeout == 0 {
		c.Reload.Timeout = Duration(DefaultTimeout)
	}
	for _, kv := range [][2]string{{"letsencrypt_dir", c.LetsencryptDir}, {"state_dir", c.StateDir}, {"apps_dir", c.AppsDir}} {
		if !filepath.IsAbs(kv[1]) {
			return &keyError{kv[0], fmt.Sprintf("%s must be an absolute path, got %q", kv[0], kv[1])}
		}
	}
	for _, p := range c.SourceDirs {
		if !filepath.IsAbs(p) {
			return &keyError{"source_dirs", fmt.Sprintf("source_dirs: %q is not an absolute path", p)}
		}
	}
	if c.Reload.MaxDelay < c.Reload.Debounce {
		return &keyError{"reload.max_delay", fmt.Sprintf("reload.max_delay (%s) is shorter than reload.debounce (%s)",
			time.Duration(c.Reload.MaxDelay), time.Duration(c.Reload.Debounce))}
	}
	return nil
}

// dropIn is the only shape a file in apps_dir may have.
type dropIn struct {
	Apps []App `yaml:"apps"`
}

func (c *Config) loadDropIns() error {
	files, err := filepath.Glob(filepath.Join(c.AppsDir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	// Files are parsed on every core (a thousand drop-ins are most of a
	// start-up) and joined in name order; the first error in that order
	// is the one reported.
	apps := make([][]App, len(files))
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				apps[i], errs[i] = loadDropIn(files[i])
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for i := range files {
		if errs[i] != nil {
			return errs[i]
		}
		c.Apps = append(c.Apps, apps[i]...)
	}
	return nil
}

// loadDropIn reads one drop-in file's apps.
func loadDropIn(f string) ([]App, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read drop-in: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErr(f, err)
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	var d dropIn
	if err := decodeStrict(f, root.Content[0], &d); err != nil {
		return nil, err
	}
	tmp := &Config{Apps: d.Apps}
	if err := tmp.positions(f, root.Content[0]); err != nil {
		return nil, err
	}
	return tmp.Apps, nil
}

// positions records where each app entry starts.
func (c *Config) positions(file string, doc *yaml.Node) error {
	apps := mapValue(doc, "apps")
	if apps == nil {
		return nil
	}
	if apps.Kind != yaml.SequenceNode {
		return Pos{file, apps.Line}.Errorf("apps must be a list")
	}
	for i, n := range apps.Content {
		if i < len(c.Apps) {
			c.Apps[i].Pos = Pos{file, n.Line}
		}
	}
	return nil
}

func (c *Config) checkApps() error {
	seen := map[string]Pos{}
	for i := range c.Apps {
		a := &c.Apps[i]
		if err := a.check(); err != nil {
			return err
		}
		if p, dup := seen[a.Name]; dup {
			return a.Pos.Errorf("duplicate app name %q (first defined at %s)", a.Name, p)
		}
		seen[a.Name] = a.Pos
	}
	return nil
}

// Check validates the common keys of one app entry.
func (a *App) check() error {
	p := a.Pos
	if a.Name == "" {
		return p.Errorf("app has no name")
	}
	if !nameRE.MatchString(a.Name) {
		return p.Errorf("app name %q: use lower-case letters, digits and '-'", a.Name)
	}
	if a.Type == "" {
		return p.Errorf("app %q has no type", a.Name)
	}
	for _, d := range a.Domains {
		if d == "*" {
			continue
		}
		if err := certs.CheckDomain(d); err != nil {
			return p.Errorf("app %q: domains: %v", a.Name, err)
		}
	}
	if c := a.Copy; c != nil {
		// A copy block may only adjust a type's default paths (owner,
		// group, key_mode); apps checks that the merged result has paths.
		for _, path := range []string{c.Certificate, c.PrivateKey} {
			if path != "" && !filepath.IsAbs(path) {
				return p.Errorf("app %q: copy path %q is not absolute", a.Name, path)
			}
		}
		switch c.KeyMode {
		case "", "0600", "0640", "600", "640":
		default:
			return p.Errorf("app %q: copy.key_mode %q: use 0600 or 0640", a.Name, c.KeyMode)
		}
	}
	if r := a.Reload; r != nil {
		if len(r.Units) > 0 && len(r.Command) > 0 {
			return p.Errorf("app %q: reload takes units or command, not both", a.Name)
		}
		switch r.Mode {
		case "", ModeRestart, ModeReload, ModeReloadOrRestart:
		default:
			return p.Errorf("app %q: reload.mode %q: use restart, reload or reload-or-restart", a.Name, r.Mode)
		}
		if len(r.Command) > 0 && !filepath.IsAbs(r.Command[0]) {
			return p.Errorf("app %q: reload.command[0] %q must be an absolute path (no shell, no PATH lookup)", a.Name, r.Command[0])
		}
		for _, u := range r.Units {
			if u == "" || strings.ContainsAny(u, "/ \t") {
				return p.Errorf("app %q: bad unit name %q", a.Name, u)
			}
		}
	}
	if v := a.Verify; v != nil {
		if v.Address == "" {
			return p.Errorf("app %q: verify needs address (host:port)", a.Name)
		}
		ok := false
		for _, s := range StartTLSProtocols {
			ok = ok || v.StartTLS == s
		}
		if !ok {
			return p.Errorf("app %q: verify.starttls %q: use smtp, imap, xmpp, postgres or leave it empty", a.Name, v.StartTLS)
		}
	}
	return nil
}

// DecodeOptions decodes an app's `options:` into out, refusing keys that out
// has no field for, with the file and line of the offending key.
func (a *App) DecodeOptions(out any) error {
	n := &a.Options
	if n.Kind == 0 {
		return nil
	}
	if err := decodeStrict(a.Pos.File, n, out); err != nil {
		return fmt.Errorf("app %q: options: %w", a.Name, err)
	}
	return nil
}

// decodeStrict decodes n into out after checking that every mapping key, at
// every level of struct nesting, names a field.
func decodeStrict(file string, n *yaml.Node, out any) error {
	if err := checkKeys(file, n, reflect.TypeOf(out)); err != nil {
		return err
	}
	if err := n.Decode(out); err != nil {
		return yamlErr(file, err)
	}
	return nil
}

func checkKeys(file string, n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == reflect.TypeOf(yaml.Node{}):
		return nil
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return Pos{file, n.Line}.Errorf("expected a mapping, got %s", kindName(n))
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			fields[tag] = f
			names = append(names, tag)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return Pos{file, k.Line}.Errorf("unknown key %q (known: %s)", k.Value, strings.Join(names, ", "))
			}
			if seen[k.Value] {
				return Pos{file, k.Line}.Errorf("key %q given twice", k.Value)
			}
			seen[k.Value] = true
			if err := checkKeys(file, v, f.Type); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				if err := checkKeys(file, c, t.Elem()); err != nil {
					return err
				}
			}
		} else if n.Tag != "!!null" {
			return Pos{file, n.Line}.Errorf("expected a list, got %s", kindName(n))
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// yamlErr turns yaml's "yaml: line N: msg" into "file:N: msg".
func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return fmt.Errorf("%s:%s", file, strings.TrimPrefix(te.Errors[0], "line "))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		return fmt.Errorf("%s:%s", file, strings.TrimPrefix(msg, "line "))
	}
	return fmt.Errorf("%s: %s", file, msg)
}
