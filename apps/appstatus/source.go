package appstatus

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/journal"
)

// certSource is the certificate a domain should be served with now.
type certSource struct {
	path    string            // the certificate file
	paths   map[string]string // Notify's info to deploy it again
	leaf    *x509.Certificate
	fp      string
	written time.Time // when the certificate file was written
}

// findSources maps each domain to its newest certificate on disk: certbot's
// lineages under letsencrypt_dir, and the files other ACME clients (lego,
// acme.sh, dehydrated, which keep their own stores) last handed a hook, as
// the journal remembers them. Files are read again now: a client renews in
// place.
func findSources(lineages []Lineage, entries []journal.Entry) map[string]*certSource {
	byPath := map[string]*certSource{}
	load := func(p string, paths map[string]string) *certSource {
		p = filepath.Clean(p)
		if s, ok := byPath[p]; ok {
			return s
		}
		leaf, mtime, err := readLeaf(p)
		if err != nil {
			byPath[p] = nil
			return nil
		}
		s := &certSource{path: p, paths: paths, leaf: leaf, fp: certs.Fingerprint(leaf), written: mtime}
		byPath[p] = s
		return s
	}
	out := map[string]*certSource{}
	offer := func(d string, s *certSource) {
		if s == nil || !certs.Covers(s.leaf, d) {
			return
		}
		cur := out[d]
		if cur == nil || s.leaf.NotBefore.After(cur.leaf.NotBefore) ||
			s.leaf.NotBefore.Equal(cur.leaf.NotBefore) && s.written.After(cur.written) {
			out[d] = s
		}
	}
	for _, l := range lineages {
		if len(l.Names) == 0 {
			continue // no DNS name: nothing certbus can serve
		}
		s := load(l.Paths[event.KeyCertificate], l.Paths)
		for _, n := range l.Names {
			offer(n, s)
		}
	}
	for _, e := range entries {
		if e.Operation != event.Deploy {
			continue
		}
		for d, ed := range e.Domains {
			if p := ed.Paths[event.KeyCertificate]; p != "" {
				offer(d, load(p, ed.Paths))
			}
		}
	}
	return out
}

// readLeaf reads the first certificate of a PEM file and the time the file
// (after symlinks: certbot's archive file) was last written.
func readLeaf(p string) (*x509.Certificate, time.Time, error) {
	data, err := readLimited(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	leaf, err := certs.FirstCertificate(data)
	return leaf, st.ModTime(), err
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, certs.MaxFileSize))
}

// firstCert skips what may precede the leaf (a private key, in a combined
// key+chain file) and parses the first certificate.

// firstKey parses the first private key block.
func firstKey(data []byte) (crypto.PrivateKey, error) {
	for {
		var b *pem.Block
		rest := data
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key")
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return certcrypto.ParsePEMPrivateKey(rest)
		}
	}
}

// checkCopy compares an app's copy with the source: the copy's leaf must be
// the source's, and its key the leaf's. It returns the state, a detail and
// when the copy was written.
func checkCopy(certPath, keyPath string, src *certSource) (string, string, time.Time) {
	if certPath == "" {
		return CopyNA, "", time.Time{}
	}
	leaf, mtime, err := readLeaf(certPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return CopyMissing, certPath + " does not exist", time.Time{}
	case errors.Is(err, os.ErrPermission):
		return CopyUnreadable, err.Error() + " (run status as root)", time.Time{}
	case err != nil:
		return CopyOutdated, fmt.Sprintf("%s: %v", certPath, err), time.Time{}
	}
	if fp := certs.Fingerprint(leaf); fp != src.fp {
		return CopyOutdated, fmt.Sprintf("%s holds %s (expires %s), the source %s holds %s (expires %s)",
			certPath, shortFP(fp), leaf.NotAfter.UTC().Format(time.DateOnly), src.path, shortFP(src.fp), src.leaf.NotAfter.UTC().Format(time.DateOnly)), mtime
	}
	if keyPath == "" {
		return CopyUpToDate, certPath, mtime
	}
	data, err := readLimited(keyPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return CopyMissing, keyPath + " does not exist", mtime
	case errors.Is(err, os.ErrPermission):
		return CopyUnreadable, err.Error() + " (run status as root)", mtime
	case err != nil:
		return CopyOutdated, fmt.Sprintf("%s: %v", keyPath, err), mtime
	}
	key, err := firstKey(data)
	if err != nil {
		return CopyOutdated, fmt.Sprintf("%s: %v", keyPath, err), mtime
	}
	signer, ok := key.(crypto.Signer)
	pub, ok2 := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !ok2 || !pub.Equal(signer.Public()) {
		return CopyOutdated, fmt.Sprintf("the key in %s does not match the certificate in %s", keyPath, certPath), mtime
	}
	return CopyUpToDate, certPath, mtime
}

// appDomains lists the domains of s that have a source, and the names s
// lists that have none (wildcard patterns without one are left out: they
// match names, they need not be one).
func appDomains(s *apps.Spec, sources map[string]*certSource) []string {
	seen := map[string]bool{}
	var out []string
	for d := range sources {
		if s.Serves(d) {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, d := range s.DomainList() {
		if d != "*" && !strings.HasPrefix(d, "*.") && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}
