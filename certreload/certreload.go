// Package certreload gives a Go TLS server its certificate without ever
// restarting: a Source loads a key pair, serves it through
// tls.Config.GetCertificate, and loads it again when certbus announces a
// renewal of one of its domains (the CertificateEvent D-Bus signal) and,
// if asked, on SIGHUP.
//
// A new pair replaces the old one only whole: both files are read, the key
// must match the leaf (tls.X509KeyPair) and the leaf must not be expired;
// otherwise the Source keeps serving the old pair and reports the error.
// Because certbot replaces a lineage's files one at a time, a reload after
// an event that finds a mismatched pair tries again for a moment before
// giving up. A handshake never sees a mismatched pair: the current pair is
// swapped atomically.
//
// Point a Source at the lineage (/etc/letsencrypt/live/NAME/fullchain.pem
// and privkey.pem): they are in place when certbus emits the event. Files
// that a certbus app copies elsewhere are written after the event, so a
// server reading those should use the signal app type and SIGHUP instead.
//
// certreload does not validate chains, staple OCSP, or serve several
// certificates by SNI (use one Source per certificate and choose in your
// own GetCertificate).
package certreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/bus"
)

// Options configure a Source.
type Options struct {
	// CertFile holds the leaf certificate followed by its chain (PEM).
	CertFile string
	// KeyFile holds the private key (PEM); it may be CertFile itself.
	KeyFile string
	// Domains are the names whose deploy events make the Source reload.
	// Empty: the DNS names of the certificate first loaded. An event also
	// counts when one of its paths is CertFile or KeyFile.
	Domains []string
	// SIGHUP makes Watch reload on SIGHUP too.
	SIGHUP bool
	// Settle is how long a reload after an event keeps trying when the new
	// files do not make a valid pair yet (default 2s).
	Settle time.Duration
	// OnReload, if set, is called after every reload attempt Watch makes,
	// with the certificate in use afterwards and the error that kept the
	// old one (nil if the new pair is in use). It runs on Watch's goroutine.
	OnReload func(in *x509.Certificate, err error)
}

// Source serves a key pair and replaces it when it changes on disk.
type Source struct {
	opts    Options
	current atomic.Pointer[tls.Certificate]
	domains map[string]bool

	mu     sync.Mutex // guards Watch/Close and serialises reloads
	stop   context.CancelFunc
	done   chan struct{}
	reload sync.Mutex
}

// New loads the pair and returns a Source serving it. It fails if the pair
// does not load: there is nothing to fall back on yet.
func New(o Options) (*Source, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("certreload: CertFile and KeyFile are required")
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	s := &Source{opts: o, domains: map[string]bool{}}
	c, err := load(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	s.current.Store(c)
	names := o.Domains
	if len(names) == 0 {
		names = c.Leaf.DNSNames
	}
	for _, d := range names {
		s.domains[strings.ToLower(d)] = true
	}
	return s, nil
}

// GetCertificate returns the current pair; it is meant for
// tls.Config.GetCertificate and never fails.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// Leaf returns the leaf certificate now served.
func (s *Source) Leaf() *x509.Certificate { return s.current.Load().Leaf }

// Reload reads the files again. On success the new pair is served from the
// next handshake on; on error the old pair stays and the error says why.
func (s *Source) Reload() error {
	s.reload.Lock()
	defer s.reload.Unlock()
	c, err := load(s.opts.CertFile, s.opts.KeyFile)
	if err != nil {
		return err
	}
	s.current.Store(c)
	return nil
}

// load reads both files and returns the pair only if it is whole: key
// matching leaf, leaf parsed and not expired.
func load(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certreload: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certreload: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certreload: load %s and %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certreload: %s: %w", certFile, err)
		}
	}
	if now := time.Now(); now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("certreload: %s expired at %s", certFile, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// Watch starts reloading on certbus's CertificateEvent signals received on
// conn (nil: none; the Source subscribes with a match rule and does not
// close conn) and, if Options.SIGHUP, on SIGHUP. Once Watch returns nil
// every later event is seen. It reloads on a goroutine of its own, one
// reload at a time, until Close.
func (s *Source) Watch(conn *dbus.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("certreload: already watching")
	}
	var signals chan *dbus.Signal
	match := []dbus.MatchOption{
		dbus.WithMatchSender(bus.Name),
		dbus.WithMatchObjectPath(bus.Path),
		dbus.WithMatchInterface(bus.Interface),
		dbus.WithMatchMember("CertificateEvent"),
	}
	if conn != nil {
		if err := conn.AddMatchSignal(match...); err != nil {
			return fmt.Errorf("certreload: subscribe to %s.CertificateEvent: %w", bus.Interface, err)
		}
		signals = make(chan *dbus.Signal, 16)
		conn.Signal(signals)
	}
	var hup chan os.Signal
	if s.opts.SIGHUP {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		defer func() {
			if hup != nil {
				signal.Stop(hup)
			}
			if conn != nil {
				conn.RemoveSignal(signals)
				_ = conn.RemoveMatchSignal(match...)
			}
		}()
		s.loop(ctx, signals, hup)
	}()
	return nil
}

// Close stops watching and waits for a reload in progress.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return nil
	}
	s.stop()
	<-s.done
	s.stop, s.done = nil, nil
	return nil
}

func (s *Source) loop(ctx context.Context, signals <-chan *dbus.Signal, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.report(s.Reload())
		case sig, ok := <-signals:
			if !ok {
				signals = nil // connection closed: SIGHUP may still come
				continue
			}
			if s.wants(sig) {
				s.report(s.settle(ctx))
			}
		}
	}
}

func (s *Source) report(err error) {
	if s.opts.OnReload != nil {
		s.opts.OnReload(s.Leaf(), err)
	}
}

// settle reloads, trying again for Options.Settle while the files do not
// make a valid pair (certbot replaces them one by one).
func (s *Source) settle(ctx context.Context) error {
	deadline := time.Now().Add(s.opts.Settle)
	for {
		err := s.Reload()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// wants reports whether a CertificateEvent concerns this Source: a deploy
// naming one of its domains or one of its files.
func (s *Source) wants(sig *dbus.Signal) bool {
	if sig.Path != bus.Path || sig.Name != bus.Interface+".CertificateEvent" || len(sig.Body) != 3 {
		return false
	}
	op, _ := sig.Body[1].(string)
	domains, _ := sig.Body[2].(map[string]map[string]string)
	if op != "deploy" {
		return false
	}
	files := map[string]bool{clean(s.opts.CertFile): true, clean(s.opts.KeyFile): true}
	for d, info := range domains {
		if s.domains[strings.ToLower(d)] {
			return true
		}
		for _, p := range info {
			if files[clean(p)] {
				return true
			}
		}
	}
	return false
}

func clean(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}
