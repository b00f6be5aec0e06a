// Package matrixsynapse is the app type "matrix-synapse", for the Matrix
// homeserver Synapse as Debian packages it (matrix.org's repository;
// Synapse is not in Debian bookworm).
//
// Domain: Synapse's server_name, read before each event from the config
// Synapse itself reads: homeserver.yaml, then conf.d/*.yaml in order, a
// later file's top-level key replacing an earlier one's (Debian keeps it
// in conf.d/server_name.yaml). A port in server_name is dropped. A
// `domains` list in the entry replaces it.
//
// Copy: the full chain to <config_dir>/homeserver.tls.crt (0644) and the
// key to <config_dir>/homeserver.tls.key (0600), owned by
// matrix-synapse:nogroup.
//
// Reload: reload-or-try-restart of matrix-synapse.service; Synapse
// re-reads its certificate files on SIGHUP (since 0.99), which is the
// unit's ExecReload.
//
// Verify: when the config has a `tls: true` listener, a TLS handshake on
// it (its first bind address, loopback for a wildcard) with SNI = the
// domain must present the new leaf.
//
// Options (`options:` in the app's entry):
//
//	config_dir: /etc/matrix-synapse
package matrixsynapse

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/config"
)

// Defaults of the type.
const (
	DefaultConfigDir = "/etc/matrix-synapse"
	DefaultUnit      = "matrix-synapse.service"
	User             = "matrix-synapse"
	Group            = "nogroup"
	CertFile         = "homeserver.tls.crt"
	KeyFile          = "homeserver.tls.key"
)

type options struct {
	ConfigDir string `yaml:"config_dir"`
}

func init() {
	apps.Register(apps.Type{
		Name:  "matrix-synapse",
		Doc:   "Matrix Synapse: domain = server_name, chain and key to homeserver.tls.crt/.key, reload-or-try-restart matrix-synapse.service",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{ConfigDir: DefaultConfigDir}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(o.ConfigDir) {
		return nil, a.Pos.Errorf("app %q: options.config_dir %q is not an absolute path", a.Name, o.ConfigDir)
	}
	d := apps.Defaults{
		Discover: func() ([]string, error) {
			c, err := Load(o.ConfigDir)
			if err != nil {
				return nil, err
			}
			return []string{c.ServerName}, nil
		},
		Copy: &config.Copy{
			Certificate: filepath.Join(o.ConfigDir, CertFile),
			PrivateKey:  filepath.Join(o.ConfigDir, KeyFile),
			Owner:       User,
			Group:       Group,
		},
		Reload: &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeReloadOrRestart},
	}
	if c, err := Load(o.ConfigDir); err == nil && c.TLSAddress != "" {
		d.Verify = &config.Verify{Address: c.TLSAddress, ServerName: "{domain}"}
	}
	return apps.BuildCommon(a, env, d)
}

// Config is what certbus reads of Synapse's config.
type Config struct {
	// ServerName is server_name's host, lower-case.
	ServerName string
	// From is the file server_name came from.
	From string
	// TLSAddress is where the first `tls: true` listener is reached from
	// this host, "" when there is none.
	TLSAddress string
}

// Load reads dir/homeserver.yaml, then dir/conf.d/*.yaml in lexical order,
// as Synapse's --config-path arguments on Debian do; for each top-level key
// the last file that sets it wins. Either part may be missing, not both.
func Load(dir string) (*Config, error) {
	files := []string{filepath.Join(dir, "homeserver.yaml")}
	more, err := filepath.Glob(filepath.Join(dir, "conf.d", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(more)
	files = append(files, more...)
	c := &Config{}
	var listeners *yaml.Node
	var listenersFrom string
	read := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("synapse config: %w", err)
		}
		read++
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("synapse config %s: %w", f, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			switch k.Value {
			case "server_name":
				name, err := serverName(v.Value)
				if err != nil || v.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s:%d: server_name %q: not a domain name", f, k.Line, v.Value)
				}
				c.ServerName, c.From = name, f
			case "listeners":
				listeners, listenersFrom = v, f
			}
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("synapse config: neither %s nor %s exists", files[0], filepath.Join(dir, "conf.d", "*.yaml"))
	}
	if c.ServerName == "" {
		return nil, fmt.Errorf("synapse config: no server_name in %s or %s", files[0], filepath.Join(dir, "conf.d", "*.yaml"))
	}
	if listeners != nil {
		addr, err := tlsAddress(listeners)
		if err != nil {
			return nil, fmt.Errorf("%s: listeners: %w", listenersFrom, err)
		}
		c.TLSAddress = addr
	}
	return c, nil
}

// serverName drops a port from server_name ("example.org:8448").
func serverName(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	if err := certs.CheckDomain(s); err != nil || strings.HasPrefix(s, "*.") || net.ParseIP(s) != nil {
		return "", errors.New("not a domain name")
	}
	return s, nil
}

func tlsAddress(n *yaml.Node) (string, error) {
	var ls []struct {
		Port          int      `yaml:"port"`
		TLS           bool     `yaml:"tls"`
		BindAddresses []string `yaml:"bind_addresses"`
	}
	if err := n.Decode(&ls); err != nil {
		return "", err
	}
	for _, l := range ls {
		if !l.TLS || l.Port <= 0 {
			continue
		}
		host := "127.0.0.1"
		if len(l.BindAddresses) > 0 {
			switch h := l.BindAddresses[0]; h {
			case "", "::", "0.0.0.0":
			default:
				host = h
			}
		}
		return net.JoinHostPort(host, strconv.Itoa(l.Port)), nil
	}
	return "", nil
}
