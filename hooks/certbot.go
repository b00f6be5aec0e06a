// Package hooks turns what ACME clients hand their hooks (certbot's
// environment, lego's, acme.sh's, dehydrated's arguments) into certbus
// events, writes the hook scripts certbot runs, and keeps the spool for
// events the daemon could not take. It sends events through the bus client;
// it does not validate certificates (the daemon does, at its edge).
package hooks

import (
	"errors"
	"fmt"
	"github.com/certbus/certbus/internal/certs"
	"os"
	"path/filepath"
	"strings"

	"github.com/certbus/certbus/internal/event"
)

// UsageError is a missing or malformed input: nothing is sent.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// IsUsage reports whether err is a UsageError.
func IsUsage(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}

// Domains is the a{sa{ss}} of Notify.
type Domains = map[string]map[string]string

// Certbot builds the event of a certbot directory hook from its
// environment. For deploy it needs RENEWED_LINEAGE (the live/<name>
// directory) and RENEWED_DOMAINS; pre and post carry no domains. certbot
// 2.1.0 leaves the last deploy's RENEWED_* variables in a post hook's
// environment: they are ignored on purpose, since they are not the set
// renewed.
func Certbot(op string, getenv func(string) string) (Domains, error) {
	switch event.Operation(op) {
	case event.Pre, event.Post:
		return Domains{}, nil
	case event.Deploy:
	default:
		return nil, usage("unknown hook %q: use pre, post or deploy", op)
	}
	lineage := getenv("RENEWED_LINEAGE")
	names := strings.Fields(getenv("RENEWED_DOMAINS"))
	if lineage == "" || len(names) == 0 {
		return nil, usage("RENEWED_LINEAGE and RENEWED_DOMAINS are not set: `certbus hook deploy` must be run by certbot as a deploy hook (renewal-hooks/deploy/ or --deploy-hook)")
	}
	if !filepath.IsAbs(lineage) {
		return nil, usage("RENEWED_LINEAGE %q is not an absolute path", lineage)
	}
	lineage = filepath.Clean(lineage)
	return LineageDomains(lineage, names), nil
}

// LineageDomains maps each name to the files of a certbot lineage
// directory.
func LineageDomains(lineage string, names []string) Domains {
	out := make(Domains, len(names))
	for _, n := range names {
		out[strings.ToLower(n)] = map[string]string{
			event.KeyCertificate: filepath.Join(lineage, "cert.pem"),
			event.KeyPrivateKey:  filepath.Join(lineage, "privkey.pem"),
			event.KeyFullchain:   filepath.Join(lineage, "fullchain.pem"),
			event.KeyChain:       filepath.Join(lineage, "chain.pem"),
			event.KeyLineage:     lineage,
		}
	}
	return out
}

// Lineage is a certbot lineage found on disk.
type Lineage struct {
	Dir   string   // live/<name>
	Names []string // the leaf's DNS names, lower-case
	// Fingerprint is the hex SHA-256 of the leaf in cert.pem.
	Fingerprint string
}

// ScanLineages lists the lineages under <letsencryptDir>/live with the leaf
// each serves now. A lineage whose cert.pem does not parse is reported in
// the error list and skipped.
func ScanLineages(letsencryptDir string) ([]Lineage, []error) {
	live := filepath.Join(letsencryptDir, "live")
	ents, err := os.ReadDir(live)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("scan lineages: %w", err)}
	}
	var out []Lineage
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue // README
		}
		dir := filepath.Join(live, e.Name())
		fp, names, err := CertFile(filepath.Join(dir, "cert.pem"))
		if err != nil {
			errs = append(errs, fmt.Errorf("lineage %s: %w", dir, err))
			continue
		}
		l := Lineage{Dir: dir, Fingerprint: fp, Names: names}
		out = append(out, l)
	}
	return out, errs
}

// CertFile reads the first certificate of a PEM file and returns its
// SHA-256 fingerprint (hex) and its DNS names, lower-case.
func CertFile(path string) (string, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	c, err := certs.FirstCertificate(data)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	names := make([]string, 0, len(c.DNSNames))
	for _, n := range c.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	return certs.Fingerprint(c), names, nil
}
