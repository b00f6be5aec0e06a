// Package certs checks certificate events at the edge: domain names, path
// confinement, and that the key, the leaf and the domains belong together.
// It reads each file once, from a descriptor whose real path was checked, and
// hands the checked bytes on so that nothing reads the files again.
package certs

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/internal/event"
)

// Limits on what one event may carry.
const (
	MaxDomains   = 100
	MaxFileSize  = 1 << 20
	MaxPathLen   = 4096
	MaxDomainLen = 253
)

// InvalidError is returned for anything wrong with the caller's input; the
// bus maps it to org.certbus.Dispatcher1.Error.InvalidArgument.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is (or wraps) an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// CheckDomain reports whether d is a valid DNS name: LDH labels of 1-63
// characters not starting or ending with '-', an optional leading "*.",
// at most 253 characters in all. d must already be lower-case.
func CheckDomain(d string) error {
	if d == "" {
		return invalid("empty domain name")
	}
	if len(d) > MaxDomainLen {
		return invalid("domain name %.40q... is longer than %d characters", d, MaxDomainLen)
	}
	name := strings.TrimPrefix(d, "*.")
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return invalid("domain %q: empty or over-long label", d)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return invalid("domain %q: label %q starts or ends with '-'", d, l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return invalid("domain %q: character %q is not allowed (letters, digits, '-' and '.', lower-case)", d, c)
			}
		}
	}
	return nil
}

// Roots are the directories certificate files may come from
// (letsencrypt_dir and source_dirs), resolved once.
type Roots []string

// NewRoots resolves the symlinks of each root directory. A root that does
// not exist is kept as given: nothing can be inside it anyway.
func NewRoots(dirs ...string) Roots {
	var r Roots
	for _, d := range dirs {
		if rd, err := filepath.EvalSymlinks(d); err == nil {
			d = rd
		}
		r = append(r, filepath.Clean(d))
	}
	return r
}

func (r Roots) contains(p string) bool {
	for _, root := range r {
		if p == root || strings.HasPrefix(p, root+string(os.PathSeparator)) {
			return true
		}
	}
	return false
}

// ReadFile returns the bytes of the regular file at path after checking
// that it lies inside one of the roots, as the kernel resolved every
// symlink. The path is first opened with O_PATH, which resolves it and pins
// the file without opening it (a device node's driver is never called, a
// FIFO never blocks); the real path and the type are read from that
// descriptor, and only a regular file inside the roots is then opened for
// reading, through the same descriptor, so a symlink swapped in between
// changes nothing. Four system calls more than a plain read, where resolving
// the path in user space took one per path component.
func (r Roots) ReadFile(path string) ([]byte, error) {
	if len(path) > MaxPathLen {
		return nil, invalid("path is longer than %d bytes", MaxPathLen)
	}
	if !filepath.IsAbs(path) {
		return nil, invalid("path %q is not absolute", path)
	}
	fd, err := r.pin(path, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, invalid("%s is not a regular file", path)
	}
	if st.Size > MaxFileSize {
		return nil, invalid("%s is larger than %d bytes", path, MaxFileSize)
	}
	// A blocking descriptor wrapped by os.NewFile stays out of the
	// poller (os.OpenFile would try to add it: four fcntl and an
	// epoll_ctl per file), and the buffer sized from the stat takes the
	// file in one read and the end in a second.
	var rfd int
	for { // retried on EINTR, as os.OpenFile does (a network filesystem)
		if rfd, err = unix.Open(fdPath(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, openError(path, err)
	}
	f := os.NewFile(uintptr(rfd), path)
	defer f.Close()
	var buf bytes.Buffer
	buf.Grow(int(st.Size) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > MaxFileSize { // grew since the stat
		return nil, invalid("%s is larger than %d bytes", path, MaxFileSize)
	}
	return buf.Bytes(), nil
}

// pin opens path with O_PATH (and extra flags), checks that what it
// resolved to lies inside the roots and returns the descriptor. The kernel
// resolves the path without following /proc magic links
// (RESOLVE_NO_MAGICLINKS): through /proc/PID/root a link inside the roots
// could reach a file of another mount namespace whose path reads as inside
// them. Kernels before 5.6 have no openat2 (ENOSYS), and a seccomp filter
// older than it refuses it (EPERM; systemd's @system-service allows it):
// there the path resolves as open does.
func (r Roots) pin(path string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_CLOEXEC | flags), Resolve: unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &how)
	if err == unix.ENOSYS || err == unix.EPERM {
		fd, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC|flags, 0)
	}
	if err != nil {
		return -1, openError(path, err)
	}
	real, err := os.Readlink(fdPath(fd))
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("resolve %s: %w", path, err)
	}
	if !r.contains(real) {
		unix.Close(fd)
		return -1, invalid("%s resolves to %s, outside the allowed directories %s (set source_dirs to allow more)",
			path, real, strings.Join(r, ", "))
	}
	return fd, nil
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// openError says why path could not be opened: an InvalidError when the
// path is at fault (missing, not a directory where one is needed, a loop
// or a /proc magic link, too long, not permitted), a plain error when the
// daemon is (out of descriptors or memory, an I/O error), so that the
// event is retried rather than refused.
func openError(path string, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("open %s: %w", path, err)
	}
	switch errno {
	case unix.ENOENT, unix.ENOTDIR, unix.ENAMETOOLONG, unix.EACCES, unix.EPERM:
		return invalid("cannot open %s: %v", path, errno)
	case unix.ELOOP:
		return invalid("cannot open %s: %v (symlink loops and /proc magic links are refused)", path, errno)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

var knownKeys = map[string]bool{
	event.KeyCertificate: true, event.KeyPrivateKey: true, event.KeyFullchain: true,
	event.KeyChain: true, event.KeyLineage: true,
}

// Checker validates deploy events.
type Checker struct {
	Roots Roots
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Check validates the domain map of a Notify call for op and returns the
// material per lower-cased domain. For pre and post the map may be empty;
// any domain given must still be valid. Errors are InvalidError values
// naming the domain and the problem.
func (c *Checker) Check(op event.Operation, domains map[string]map[string]string) (map[string]*event.Material, error) {
	if !op.Valid() {
		return nil, invalid("unknown operation %q: use pre, post or deploy", string(op))
	}
	if len(domains) > MaxDomains {
		return nil, invalid("%d domains in one event; at most %d are allowed", len(domains), MaxDomains)
	}
	if op == event.Deploy && len(domains) == 0 {
		return nil, invalid("deploy event without domains")
	}
	names := make([]string, 0, len(domains))
	for d := range domains {
		names = append(names, d)
	}
	sort.Strings(names)
	out := make(map[string]*event.Material, len(domains))
	// Lineages are shared by all their domains: read and check each set of
	// paths once.
	type checked struct {
		m    *event.Material
		leaf *x509.Certificate
	}
	cache := map[string]checked{}
	for _, raw := range names {
		d := strings.ToLower(raw)
		if err := CheckDomain(d); err != nil {
			return nil, err
		}
		if _, dup := out[d]; dup {
			return nil, invalid("domain %q given twice (names are compared lower-case)", d)
		}
		info := domains[raw]
		for k, v := range info {
			if !knownKeys[k] {
				return nil, invalid("domain %s: unknown info key %q (known: certificate, private_key, fullchain, chain, lineage)", d, k)
			}
			if !filepath.IsAbs(v) {
				return nil, invalid("domain %s: %s path %q is not absolute", d, k, v)
			}
			if len(v) > MaxPathLen {
				return nil, invalid("domain %s: %s path is longer than %d bytes", d, k, MaxPathLen)
			}
		}
		if op != event.Deploy {
			if len(info) > 0 {
				return nil, invalid("domain %s: a %s event carries no files", d, op)
			}
			out[d] = &event.Material{}
			continue
		}
		key := info[event.KeyCertificate] + "\x00" + info[event.KeyPrivateKey] + "\x00" + info[event.KeyFullchain] + "\x00" + info[event.KeyChain]
		ch, ok := cache[key]
		if !ok {
			m, leaf, err := c.load(d, info)
			if err != nil {
				return nil, err
			}
			ch = checked{m, leaf}
			cache[key] = ch
		}
		if !Covers(ch.leaf, d) {
			return nil, invalid("domain %s is not covered by certificate %s (it names %s)", d, ch.m.Paths[event.KeyCertificate], strings.Join(ch.leaf.DNSNames, ", "))
		}
		out[d] = ch.m
	}
	// The parsed leaves served the checks above and stay here: apps need
	// only the bytes and the fingerprint, and a storm of events should not
	// keep a thousand parsed certificates alive.
	return out, nil
}

// load reads and checks one domain's files; it returns them with the parsed
// leaf.
func (c *Checker) load(d string, info map[string]string) (*event.Material, *x509.Certificate, error) {
	for _, k := range []string{event.KeyCertificate, event.KeyPrivateKey} {
		if info[k] == "" {
			return nil, nil, invalid("domain %s: missing %s (deploy needs certificate and private_key)", d, k)
		}
	}
	if l := info[event.KeyLineage]; l != "" {
		fd, err := c.Roots.pin(l, unix.O_DIRECTORY)
		if err != nil {
			if IsInvalid(err) {
				return nil, nil, invalid("domain %s: lineage: %v", d, err)
			}
			return nil, nil, err
		}
		unix.Close(fd)
	}
	m := &event.Material{Paths: map[string]string{}}
	for k, v := range info {
		m.Paths[k] = v
	}
	read := func(k string) ([]byte, error) {
		p := info[k]
		if p == "" {
			return nil, nil
		}
		b, err := c.Roots.ReadFile(p)
		if err != nil {
			if IsInvalid(err) {
				return nil, invalid("domain %s: %s: %v", d, k, err)
			}
			return nil, err
		}
		return b, nil
	}
	var err error
	if m.Certificate, err = read(event.KeyCertificate); err != nil {
		return nil, nil, err
	}
	if m.PrivateKey, err = read(event.KeyPrivateKey); err != nil {
		return nil, nil, err
	}
	if m.Fullchain, err = read(event.KeyFullchain); err != nil {
		return nil, nil, err
	}
	if m.Chain, err = read(event.KeyChain); err != nil {
		return nil, nil, err
	}
	// The full chain holds the certificate and the chain again: it is
	// parsed once, and the other two are compared with it byte for byte
	// (parsed only when they differ, for the message).
	var fc []*x509.Certificate
	var fcErr error
	if m.Fullchain != nil {
		fc, fcErr = certcrypto.ParsePEMBundle(m.Fullchain)
	}
	certs, ok := sameDER(m.Certificate, fc)
	if !ok {
		certs, err = certcrypto.ParsePEMBundle(m.Certificate)
	}
	if err != nil || len(certs) == 0 {
		return nil, nil, invalid("domain %s: %s is not a PEM certificate: %v", d, info[event.KeyCertificate], err)
	}
	leaf := certs[0]
	// A certificate file holding the whole chain (lego's .crt) splits into
	// leaf and chain here.
	leafPEM, rest := splitFirstPEM(m.Certificate)
	if len(certs) > 1 {
		if m.Fullchain == nil {
			m.Fullchain, fc = m.Certificate, certs
		}
		if m.Chain == nil {
			m.Chain = rest
		}
		m.Certificate = leafPEM
	}
	if m.Fullchain != nil {
		if fcErr != nil || len(fc) == 0 {
			return nil, nil, invalid("domain %s: fullchain %s is not a PEM bundle: %v", d, info[event.KeyFullchain], fcErr)
		}
		if !bytes.Equal(fc[0].Raw, leaf.Raw) {
			return nil, nil, invalid("domain %s: fullchain %s does not start with the certificate of %s", d, info[event.KeyFullchain], info[event.KeyCertificate])
		}
	} else {
		m.Fullchain = JoinPEM(m.Certificate, m.Chain)
	}
	if m.Chain != nil {
		var intermediates []*x509.Certificate
		if len(fc) > 1 {
			intermediates = fc[1:]
		}
		if _, same := sameDER(m.Chain, intermediates); !same {
			if _, err := certcrypto.ParsePEMBundle(m.Chain); err != nil {
				return nil, nil, invalid("domain %s: chain %s is not a PEM bundle: %v", d, info[event.KeyChain], err)
			}
		}
	}
	key, err := certcrypto.ParsePEMPrivateKey(keyBlock(m.PrivateKey))
	if err != nil {
		return nil, nil, invalid("domain %s: %s is not a PEM private key: %v", d, info[event.KeyPrivateKey], err)
	}
	if err := matchKey(leaf, key); err != nil {
		return nil, nil, invalid("domain %s: private key %s does not match certificate %s: %v", d, info[event.KeyPrivateKey], info[event.KeyCertificate], err)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if t := now(); t.After(leaf.NotAfter) {
		return nil, nil, invalid("domain %s: certificate %s expired on %s", d, info[event.KeyCertificate], leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(leaf.Raw)
	m.Fingerprint = hex.EncodeToString(sum[:])
	m.NotAfter = leaf.NotAfter
	return m, leaf, nil
}

// Covers reports whether leaf is valid for d; a wildcard d must be named as
// such in the certificate.
func Covers(leaf *x509.Certificate, d string) bool {
	if strings.HasPrefix(d, "*.") {
		for _, n := range leaf.DNSNames {
			if strings.ToLower(n) == d {
				return true
			}
		}
		return false
	}
	return leaf.VerifyHostname(d) == nil
}

func matchKey(leaf *x509.Certificate, key crypto.PrivateKey) error {
	s, ok := key.(crypto.Signer)
	if !ok {
		return errors.New("unsupported key type")
	}
	pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return errors.New("public keys differ")
	}
	return nil
}

// keyBlock skips what may precede the key in a key file: `openssl ecparam
// -genkey` (dehydrated's default for EC keys) writes an EC PARAMETERS block
// first. Daemons read such files as they are; only the parse needs the key.
func keyBlock(b []byte) []byte {
	rest := b
	for {
		block, next := pem.Decode(rest)
		if block == nil {
			return b
		}
		if block.Type == "PRIVATE KEY" || strings.HasSuffix(block.Type, " PRIVATE KEY") {
			return rest
		}
		rest = next
	}
}

// sameDER returns the certificates of parsed that the CERTIFICATE blocks
// of pemData are, byte for byte and in order (a prefix of parsed), and
// whether they are: what certcrypto.ParsePEMBundle(pemData) would return,
// without parsing again.
func sameDER(pemData []byte, parsed []*x509.Certificate) ([]*x509.Certificate, bool) {
	n := 0
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if n == len(parsed) || !bytes.Equal(b.Bytes, parsed[n].Raw) {
			return nil, false
		}
		n++
	}
	return parsed[:n], n > 0
}

// splitFirstPEM returns the first PEM block (with its END line) and the rest.
func splitFirstPEM(b []byte) (first, rest []byte) {
	const end = "-----END CERTIFICATE-----"
	i := bytes.Index(b, []byte(end))
	if i < 0 {
		return b, nil
	}
	j := i + len(end)
	if j < len(b) && b[j] == '\r' {
		j++
	}
	if j < len(b) && b[j] == '\n' {
		j++
	}
	return b[:j], bytes.TrimLeft(b[j:], "\r\n")
}

// JoinPEM concatenates PEM texts, each ending in a newline (a combined
// key+chain file, a certificate and its chain).
func JoinPEM(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		out = append(out, p...)
		if out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// FirstCertificate parses the first CERTIFICATE block of PEM data, skipping
// any other blocks before it.
func FirstCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
