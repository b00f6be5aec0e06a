// Package hooks turns what ACME clients hand their hooks (certbot's
// environment, lego's, acme.sh's, dehydrated's arguments) into certbus
// events, writes the hook scripts certbot runs, and keeps the spool for
// events the daemon could not take. It sends events through the bus client;
// it does not validate certificates (the daemon does, at its edge).
package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/certbus/certbus/hooks/certbotenv"
	"github.com/certbus/certbus/internal/certs"
)

// UsageError is a missing or malformed input: nothing is sent.
type UsageError = certbotenv.UsageError

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
// environment (certbotenv.Domains).
func Certbot(op string, getenv func(string) string) (Domains, error) {
	return certbotenv.Domains(op, getenv)
}

// LineageDomains maps each name to the files of a certbot lineage
// directory (certbotenv.LineageDomains).
func LineageDomains(lineage string, names []string) Domains {
	return certbotenv.LineageDomains(lineage, names)
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
