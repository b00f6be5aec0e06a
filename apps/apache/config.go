package apache

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/certbus/certbus/internal/certs"
)

// VHost is what discovery keeps of a <VirtualHost> section.
type VHost struct {
	File string
	Line int
	// Addresses are the section's arguments as written ("*:443",
	// "[::]:443", "192.0.2.1:443").
	Addresses []string
	// Names are ServerName then the ServerAlias names, lower-case; names
	// that are not DNS names (IP addresses, patterns other than a leading
	// "*.") are left out.
	Names []string
	// CertFile is the section's SSLCertificateFile, absolute and clean, or
	// the server-wide one it inherits when it has SSLEngine on and none of
	// its own; "" when it has neither.
	CertFile string
}

// Config is what discovery read from Apache's configuration.
type Config struct {
	VHosts []VHost
	// Listens are the Listen directives' addresses ("443",
	// "192.0.2.1:443", "[::]:8443").
	Listens []string
}

// maxDepth bounds Include nesting (Apache's own limit is 128; a loop
// ends here instead).
const maxDepth = 32

// Parse reads root/apache2.conf (Debian's main file; root is the
// ServerRoot, as with apache2 -d root) and every file it includes, and
// returns the virtual hosts. It reads the configuration the way Apache
// does as far as certificates go: Include and IncludeOptional (globs,
// directories, paths relative to ServerRoot), Define'd and environment
// variables, line continuations, quoted arguments. Conditional sections
// (<IfModule>, <IfDefine>) are read as if their condition held; <Macro>
// bodies and their Use lines are not expanded. A missing included file is
// skipped: Apache's own config test reports it, discovery only looks for
// names.
func Parse(root string) (*Config, error) {
	p := &parser{serverRoot: root, defines: map[string]string{}}
	main := filepath.Join(root, "apache2.conf")
	if _, err := os.Stat(main); err != nil {
		return nil, fmt.Errorf("apache config: %w", err)
	}
	if err := p.file(main, 0); err != nil {
		return nil, err
	}
	if p.cur != nil {
		return nil, fmt.Errorf("%s:%d: <VirtualHost> is never closed", p.cur.File, p.cur.Line)
	}
	for i := range p.vhosts {
		v := &p.vhosts[i]
		if v.CertFile == "" && (v.ssl || v.sslUnset && p.globalSSL) {
			v.CertFile = p.globalCert
		}
		p.out.VHosts = append(p.out.VHosts, v.VHost)
	}
	return &p.out, nil
}

type vhost struct {
	VHost
	ssl, sslUnset bool
}

type parser struct {
	serverRoot string
	defines    map[string]string
	vhosts     []vhost
	cur        *vhost
	globalCert string
	globalSSL  bool
	macro      int // depth inside <Macro> sections
	files      int
	out        Config
}

// maxFiles bounds how many files one discovery reads.
const maxFiles = 10000

func (p *parser) file(path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("apache config: includes nested deeper than %d at %s (a loop?)", maxDepth, path)
	}
	if p.files++; p.files > maxFiles {
		return fmt.Errorf("apache config: more than %d files included", maxFiles)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("apache config: %w", err)
	}
	for _, l := range logicalLines(string(data)) {
		if err := p.line(path, l.n, l.text, depth); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) line(path string, n int, text string, depth int) error {
	if text == "" || text[0] == '#' {
		return nil
	}
	if strings.HasPrefix(text, "</") {
		name := strings.ToLower(strings.TrimSpace(strings.TrimSuffix(text[2:], ">")))
		switch {
		case name == "macro" && p.macro > 0:
			p.macro--
		case name == "virtualhost" && p.macro == 0 && p.cur != nil:
			p.vhosts = append(p.vhosts, *p.cur)
			p.cur = nil
		}
		return nil
	}
	if text[0] == '<' {
		args := fields(strings.TrimSuffix(strings.TrimSpace(text[1:]), ">"))
		if len(args) == 0 {
			return nil
		}
		switch strings.ToLower(args[0]) {
		case "macro":
			p.macro++
		case "virtualhost":
			if p.macro > 0 {
				return nil
			}
			if p.cur != nil {
				return fmt.Errorf("%s:%d: <VirtualHost> inside the <VirtualHost> of %s:%d", path, n, p.cur.File, p.cur.Line)
			}
			p.cur = &vhost{VHost: VHost{File: path, Line: n, Addresses: p.expand(args[1:])}, sslUnset: true}
		}
		return nil
	}
	if p.macro > 0 {
		return nil
	}
	args := fields(text)
	name := strings.ToLower(args[0])
	args = p.expand(args[1:])
	if len(args) == 0 {
		return nil
	}
	switch name {
	case "define":
		if len(args) > 1 {
			p.defines[args[0]] = args[1]
		} else {
			p.defines[args[0]] = ""
		}
	case "serverroot":
		p.serverRoot = filepath.Clean(args[0])
	case "include", "includeoptional":
		return p.include(args[0], depth)
	case "listen":
		p.out.Listens = append(p.out.Listens, args[0])
	case "servername":
		if p.cur != nil {
			p.cur.Names = addName(p.cur.Names, serverName(args[0]))
		}
	case "serveralias":
		if p.cur != nil {
			for _, a := range args {
				p.cur.Names = addName(p.cur.Names, strings.TrimSuffix(strings.ToLower(a), "."))
			}
		}
	case "sslcertificatefile":
		f := p.abs(args[0])
		if p.cur != nil {
			p.cur.CertFile = f
		} else {
			p.globalCert = f
		}
	case "sslengine":
		on := strings.EqualFold(args[0], "on")
		if p.cur != nil {
			p.cur.ssl, p.cur.sslUnset = on, false
		} else {
			p.globalSSL = on
		}
	}
	return nil
}

// include reads what an Include names: a file, a directory (every file
// below it), or a glob, in lexical order.
func (p *parser) include(pattern string, depth int) error {
	pattern = p.abs(pattern)
	matches := []string{pattern}
	if strings.ContainsAny(pattern, "*?[") {
		var err error
		if matches, err = filepath.Glob(pattern); err != nil {
			return fmt.Errorf("apache config: include %q: %w", pattern, err)
		}
		sort.Strings(matches)
	}
	for _, m := range matches {
		fi, err := os.Stat(m)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("apache config: %w", err)
		}
		if !fi.IsDir() {
			if err := p.file(m, depth+1); err != nil {
				return err
			}
			continue
		}
		var files []string
		err = filepath.WalkDir(m, func(f string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, f)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("apache config: %w", err)
		}
		for _, f := range files { // WalkDir walks in lexical order
			if err := p.file(f, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *parser) abs(path string) string {
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.serverRoot, path)
	}
	return filepath.Clean(path)
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// expand replaces ${VAR} with a Define'd value or the environment's, as
// Apache does; an unknown variable stays as written.
func (p *parser) expand(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = varRE.ReplaceAllStringFunc(a, func(m string) string {
			name := m[2 : len(m)-1]
			if v, ok := p.defines[name]; ok {
				return v
			}
			if v, ok := os.LookupEnv(name); ok {
				return v
			}
			return m
		})
	}
	return out
}

// serverName turns a ServerName argument ("[scheme://]host[:port]") into
// the host, lower-case.
func serverName(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// addName keeps DNS names (and "*.x" wildcards) only: an IP address or a
// pattern such as "www?.x" cannot be a certificate's domain.
func addName(names []string, n string) []string {
	if certs.CheckDomain(n) != nil || net.ParseIP(n) != nil {
		return names
	}
	for _, have := range names {
		if have == n {
			return names
		}
	}
	return append(names, n)
}

type logicalLine struct {
	n    int
	text string
}

// logicalLines joins lines continued with a trailing backslash and trims
// them; n is the line a logical line starts on.
func logicalLines(data string) []logicalLine {
	var out []logicalLine
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(data, "\n") {
		raw = strings.TrimRight(raw, " \t\r")
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(raw, "\\") {
			cur.WriteString(strings.TrimSuffix(raw, "\\"))
			continue
		}
		cur.WriteString(raw)
		out = append(out, logicalLine{start, strings.TrimSpace(cur.String())})
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, logicalLine{start, strings.TrimSpace(cur.String())})
	}
	return out
}

// fields splits a directive's arguments on white space, honouring double
// and single quotes and backslash escapes inside them.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	in := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// InLineage reports whether path lies in a certbot lineage under leDir
// (leDir/live/NAME/... or leDir/archive/NAME/...).
func InLineage(path, leDir string) bool {
	rel, err := filepath.Rel(filepath.Clean(leDir), path)
	if err != nil {
		return false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	return len(parts) >= 3 && (parts[0] == "live" || parts[0] == "archive")
}

// Discovered is what discovery concludes for one letsencrypt_dir.
type Discovered struct {
	// Domains are the names of the virtual hosts whose certificate lies
	// in a lineage, sorted.
	Domains []string
	// Endpoint is where those virtual hosts can be reached from this host
	// for verification ("127.0.0.1:443"), or "" when they do not share one
	// (then Why says so).
	Endpoint string
	Why      string
}

// Discover applies Parse's result to leDir.
func (c *Config) Discover(leDir string) Discovered {
	var d Discovered
	seen := map[string]bool{}
	endpoints := map[string]bool{}
	for _, v := range c.VHosts {
		if v.CertFile == "" || !InLineage(v.CertFile, leDir) {
			continue
		}
		for _, n := range v.Names {
			if !seen[n] {
				seen[n] = true
				d.Domains = append(d.Domains, n)
			}
		}
		if ep := c.endpoint(v); ep != "" {
			endpoints[ep] = true
		} else if len(v.Names) > 0 {
			d.Why = fmt.Sprintf("%s:%d: no address with a port in <VirtualHost %s>", v.File, v.Line, strings.Join(v.Addresses, " "))
		}
	}
	sort.Strings(d.Domains)
	switch {
	case d.Why != "":
	case len(endpoints) == 1:
		for ep := range endpoints {
			d.Endpoint = ep
		}
	case len(endpoints) > 1:
		var eps []string
		for ep := range endpoints {
			eps = append(eps, ep)
		}
		sort.Strings(eps)
		d.Why = "the virtual hosts listen on different addresses: " + strings.Join(eps, ", ")
	}
	return d
}

// endpoint is where this host reaches a virtual host: its first address
// with a port; a wildcard address becomes the loopback address Apache
// listens on for that port.
func (c *Config) endpoint(v VHost) string {
	for _, a := range v.Addresses {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		switch host {
		case "*", "_default_", "0.0.0.0", "":
			host = c.listenHost(port)
		case "::":
			host = "::1"
		}
		return net.JoinHostPort(host, port)
	}
	return ""
}

// listenHost is the address to reach a wildcard virtual host on port: the
// loopback address unless every Listen for the port names one address.
func (c *Config) listenHost(port string) string {
	host := ""
	for _, l := range c.Listens {
		h, p, err := net.SplitHostPort(l)
		if err != nil {
			h, p = "", l // "Listen 443"
		}
		if p != port {
			continue
		}
		switch h {
		case "", "0.0.0.0", "::", "*":
			return "127.0.0.1"
		}
		if host == "" {
			host = h
		}
	}
	if host == "" {
		return "127.0.0.1"
	}
	return host
}
