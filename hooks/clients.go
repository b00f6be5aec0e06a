package hooks

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// What lego, acme.sh and dehydrated have in common: each hands its hook one
// certificate, named by the client's own idea of the domain (the first
// name asked for), and the certificate's other names are only in the
// certificate. The event carries every DNS name of the leaf, so that an app
// serving www.example.org hears about the certificate lego files under
// example.org.

// maxCertFile bounds what a hook reads to learn the names (the daemon has
// the same limit).
const maxCertFile = 1 << 20

// absPath makes a path the client gave absolute. lego's --path defaults to
// ./.lego, so its variables are relative to the directory lego runs in,
// which is the hook's own working directory too.
func absPath(name, p string) (string, error) {
	if p == "" {
		return "", usage("%s is empty", name)
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", usage("%s %q: %v", name, p, err)
	}
	return a, nil
}

// leafNames returns the lower-cased DNS names of the first certificate in
// the PEM file at path: the leaf, in every layout these clients write.
func leafNames(name, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usage("%s: %v", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile))
	if err != nil {
		return nil, usage("%s: %v", name, err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, usage("%s %s holds no PEM certificate", name, path)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, usage("%s %s: %v", name, path, err)
		}
		var out []string
		for _, n := range c.DNSNames {
			out = append(out, strings.ToLower(n))
		}
		if len(out) == 0 {
			return nil, usage("%s %s names no DNS name (certbus handles DNS names only)", name, path)
		}
		return out, nil
	}
}

// certDomains maps every name of the leaf, and the client's main domain if
// the leaf lacks it (the daemon then refuses the event, naming both), to the
// same files.
func certDomains(main string, names []string, info map[string]string) Domains {
	out := make(Domains, len(names)+1)
	add := func(n string) {
		m := make(map[string]string, len(info))
		for k, v := range info {
			m[k] = v
		}
		out[n] = m
	}
	for _, n := range names {
		add(n)
	}
	if main = strings.ToLower(strings.TrimSpace(main)); main != "" {
		if _, ok := out[main]; !ok {
			add(main)
		}
	}
	return out
}

// optionalFile returns the absolute path of an optional file, or "" when
// the variable is unset or the file does not exist (the daemon builds what
// is missing from the certificate and chain it has).
func optionalFile(name, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	a, err := absPath(name, p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(a); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return a, nil
}

// need returns the absolute path in the environment variable name, or a
// usage error saying which client should have set it.
func need(getenv func(string) string, name, client string) (string, error) {
	v := getenv(name)
	if v == "" {
		return "", usage("%s is not set: %s", name, client)
	}
	return absPath(name, v)
}
