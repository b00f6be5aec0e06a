package ejabberd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/internal/certs"
)

// Config is what certbus reads of ejabberd.yml.
type Config struct {
	// Hosts are the XMPP domains (`hosts:`), lower-case, in order; names
	// that are not DNS names are left out.
	Hosts []string
	// Certfiles are the `certfiles:` entries (paths or globs).
	Certfiles []string
	// C2S are the client-to-server listeners (`listen:` entries with
	// module ejabberd_c2s).
	C2S []Listener
}

// Listener is one ejabberd_c2s listener.
type Listener struct {
	IP   string // as written; "" when not set
	Port int
	// TLS is direct TLS (`tls: true`, port 5223 style); otherwise clients
	// use STARTTLS.
	TLS bool
}

// maxIncludes bounds include_config_file nesting.
const maxIncludes = 16

// Load reads an ejabberd.yml: hosts, certfiles and the c2s listeners,
// with `define_macro` macros substituted and files named by
// `include_config_file` read too (an option in the including file wins
// over the same option in an included one).
func Load(path string) (*Config, error) {
	l := &loader{macros: map[string]*yaml.Node{}}
	if err := l.file(path, 0); err != nil {
		return nil, err
	}
	c := &Config{}
	if n := l.opts["hosts"]; n != nil {
		list, err := l.strings(n)
		if err != nil {
			return nil, fmt.Errorf("%s: hosts: %w", l.where["hosts"], err)
		}
		for _, h := range list {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			if certs.CheckDomain(h) == nil && !strings.HasPrefix(h, "*.") {
				c.Hosts = append(c.Hosts, h)
			}
		}
	}
	if n := l.opts["certfiles"]; n != nil {
		list, err := l.strings(n)
		if err != nil {
			return nil, fmt.Errorf("%s: certfiles: %w", l.where["certfiles"], err)
		}
		c.Certfiles = list
	}
	if n := l.opts["listen"]; n != nil {
		ls, err := l.listeners(n)
		if err != nil {
			return nil, fmt.Errorf("%s: listen: %w", l.where["listen"], err)
		}
		c.C2S = ls
	}
	return c, nil
}

type loader struct {
	macros map[string]*yaml.Node
	opts   map[string]*yaml.Node
	where  map[string]string // option -> file:line
}

func (l *loader) file(path string, depth int) error {
	if depth > maxIncludes {
		return fmt.Errorf("ejabberd config: include_config_file nested deeper than %d at %s", maxIncludes, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ejabberd config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("ejabberd config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("ejabberd config %s: top level is not a mapping", path)
	}
	if l.opts == nil {
		l.opts, l.where = map[string]*yaml.Node{}, map[string]string{}
	}
	var includes []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "define_macro":
			if v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					if _, dup := l.macros[v.Content[j].Value]; !dup {
						l.macros[v.Content[j].Value] = v.Content[j+1]
					}
				}
			}
		case "include_config_file":
			inc, err := includeFiles(v)
			if err != nil {
				return fmt.Errorf("%s:%d: include_config_file: %w", path, k.Line, err)
			}
			includes = append(includes, inc...)
		default:
			if _, seen := l.opts[k.Value]; !seen {
				l.opts[k.Value] = v
				l.where[k.Value] = fmt.Sprintf("%s:%d", path, k.Line)
			}
		}
	}
	for _, inc := range includes {
		if !filepath.IsAbs(inc) {
			inc = filepath.Join(filepath.Dir(path), inc)
		}
		if err := l.file(inc, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// includeFiles reads include_config_file: a path, a list of paths, or a
// mapping of path to {allow_only, disallow}.
func includeFiles(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a path", c.Line)
			}
			out = append(out, c.Value)
		}
		return out, nil
	case yaml.MappingNode:
		var out []string
		for i := 0; i < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: want a path, a list or a mapping", n.Line)
}

// resolve substitutes a macro: ejabberd replaces a scalar that names a
// defined macro by the macro's value.
func (l *loader) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n != nil && n.Kind == yaml.ScalarNode; i++ {
		m, ok := l.macros[n.Value]
		if !ok {
			break
		}
		n = m
	}
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (l *loader) strings(n *yaml.Node) ([]string, error) {
	n = l.resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			c = l.resolve(c)
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a string", c.Line)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: want a list", n.Line)
}

func (l *loader) listeners(n *yaml.Node) ([]Listener, error) {
	n = l.resolve(n)
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: want a list of listeners", n.Line)
	}
	var out []Listener
	for _, e := range n.Content {
		e = l.resolve(e)
		if e.Kind != yaml.MappingNode {
			continue
		}
		var li Listener
		module := ""
		for i := 0; i+1 < len(e.Content); i += 2 {
			k, v := e.Content[i].Value, l.resolve(e.Content[i+1])
			if v.Kind != yaml.ScalarNode {
				continue
			}
			switch k {
			case "module":
				module = v.Value
			case "port":
				p, err := strconv.Atoi(v.Value)
				if err != nil {
					li.Port = -1 // a unix socket ("unix:...") or a typo: not a TCP listener
				} else {
					li.Port = p
				}
			case "ip":
				li.IP = v.Value
			case "tls":
				li.TLS = v.Value == "true"
			}
		}
		if module == "ejabberd_c2s" && li.Port > 0 {
			out = append(out, li)
		}
	}
	return out, nil
}

// Endpoint is where this host verifies what ejabberd serves to clients:
// the first STARTTLS c2s listener (a direct-TLS one if there is none),
// with a wildcard address turned into the loopback address.
func (c *Config) Endpoint() (address string, directTLS bool, ok bool) {
	var pick *Listener
	for i := range c.C2S {
		if !c.C2S[i].TLS {
			pick = &c.C2S[i]
			break
		}
	}
	if pick == nil && len(c.C2S) > 0 {
		pick = &c.C2S[0]
	}
	if pick == nil {
		return "", false, false
	}
	ip := strings.Trim(pick.IP, "[]")
	switch ip {
	case "", "::", "0.0.0.0":
		ip = "127.0.0.1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(pick.Port)), pick.TLS, true
}

// Reads reports whether ejabberd reads file, i.e. a certfiles entry names
// it or matches it as a glob.
func (c *Config) Reads(file string) bool {
	for _, cf := range c.Certfiles {
		if cf == file {
			return true
		}
		if ok, _ := filepath.Match(cf, file); ok {
			return true
		}
	}
	return false
}
