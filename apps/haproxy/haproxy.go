// Package haproxy is the HAProxy app type. It writes the combined PEM file
// HAProxy loads (private key, then the full chain: HAProxy finds each PEM
// block by its type, in any order), atomically, and then hands the same
// bytes to the running HAProxy over its runtime API, so that nothing
// reloads and no connection is touched:
//
//	set ssl cert <file> <<
//	<PEM>
//
//	commit ssl cert <file>
//
// HAProxy updates only certificates it already loaded from <file> (the path
// as its configuration names it, e.g. a file in a `crt /etc/haproxy/certs/`
// directory). For a file it does not know, a payload larger than its
// tune.bufsize (HAProxy drops such a command without an answer, haproxy#1805)
// or an unreachable socket, the chain falls back to reloading haproxy.service,
// which reads the file written before.
//
// HAProxy has one certificate transaction at a time for the whole process:
// the runtime method never touches a transaction it did not open on another
// file (it waits for it to end), aborts its own on any error, and runs one
// update at a time.
//
// Options (all optional):
//
//	socket: /run/haproxy/admin.sock   # the `stats socket ... level admin`; a path, or host:port for a TCP socket
//	bufsize: 16384                    # HAProxy's tune.bufsize; larger payloads go by reload
//
// Defaults: copy {certificate and private_key: /etc/haproxy/certs/{domain}.pem},
// reload {units: [haproxy.service], mode: reload} after the runtime API,
// verify {address: 127.0.0.1:443}. domains: is required.
package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	Socket  string `yaml:"socket"`
	Bufsize int    `yaml:"bufsize"`
}

// Defaults of the haproxy type.
const (
	DefaultSocket  = "/run/haproxy/admin.sock"
	DefaultBufsize = 16384
	DefaultPEM     = "/etc/haproxy/certs/{domain}.pem"
	DefaultUnit    = "haproxy.service"
	DefaultVerify  = "127.0.0.1:443"
)

func init() {
	apps.Register(apps.Type{
		Name:  "haproxy",
		Doc:   "HAProxy: combined PEM file, then set/commit ssl cert over the runtime API (reload only as a fallback)",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if !filepath.IsAbs(o.Socket) {
		if _, _, err := net.SplitHostPort(o.Socket); err != nil {
			return nil, a.Pos.Errorf("app %q: options.socket %q: want an absolute path or host:port", a.Name, o.Socket)
		}
	}
	if o.Bufsize == 0 {
		o.Bufsize = DefaultBufsize
	}
	if o.Bufsize < 1024 {
		return nil, a.Pos.Errorf("app %q: options.bufsize %d is below HAProxy's minimum", a.Name, o.Bufsize)
	}
	s, err := apps.BuildCommon(a, env, apps.Defaults{
		Copy:   &config.Copy{Certificate: DefaultPEM, PrivateKey: DefaultPEM},
		Reload: &config.AppReload{Units: []string{DefaultUnit}, Mode: config.ModeReload},
		Verify: &config.Verify{Address: DefaultVerify},
	})
	if err != nil {
		return nil, err
	}
	if s.Copy.Certificate != s.Copy.PrivateKey {
		return nil, a.Pos.Errorf("app %q: HAProxy loads key and certificate from one file: copy.certificate and copy.private_key must be the same path", a.Name)
	}
	rt := &RuntimeReloader{Socket: o.Socket, Bufsize: o.Bufsize, Path: s.Copy.Certificate}
	s.Reloaders = append([]apps.Reloader{rt}, s.Reloaders...)
	return s, nil
}

// RuntimeReloader updates certificates in a running HAProxy over its
// runtime API from the files the app installed.
type RuntimeReloader struct {
	// Socket is the admin socket: a path, or host:port.
	Socket string
	// Bufsize is HAProxy's tune.bufsize: a command with its payload must
	// fit in it.
	Bufsize int
	// Path is the file template ({domain}); it is also the name HAProxy
	// knows the certificate by.
	Path string

	mu sync.Mutex // one transaction at a time from this app
}

// Name describes the method.
func (r *RuntimeReloader) Name() string { return "haproxy runtime API " + r.Socket }

// ErrNotLoaded means HAProxy has no certificate loaded from the file: only
// a reload makes it read a new file.
var ErrNotLoaded = errors.New("not loaded by HAProxy")

// Reload sends every installed file of the run to HAProxy.
func (r *RuntimeReloader) Reload(ctx context.Context, run apps.RunInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range run.Domains {
		p := apps.ExpandPath(r.Path, d)
		if seen[p] {
			continue
		}
		seen[p] = true
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s for the runtime API: %w", p, err)
		}
		if err := r.Update(ctx, p, data); err != nil {
			return err
		}
	}
	return nil
}

// Update replaces the certificate HAProxy loaded from file with pemData in
// one transaction: set, then commit; abort on any error.
func (r *RuntimeReloader) Update(ctx context.Context, file string, pemData []byte) error {
	payload := payload(pemData)
	cmd := "set ssl cert " + file + " <<\n" + payload + "\n"
	// HAProxy needs room for its own use of the buffer: keep a margin.
	if limit := r.Bufsize - 1024; len(cmd) > limit {
		return fmt.Errorf("set ssl cert %s: the command is %d bytes, over what tune.bufsize %d allows (%d): raise tune.bufsize and options.bufsize, or rely on the reload", file, len(cmd), r.Bufsize, limit)
	}
	if err := r.waitForOthers(ctx, file); err != nil {
		return err
	}
	out, err := r.command(ctx, cmd)
	if err != nil {
		return err
	}
	switch {
	case strings.Contains(out, "Transaction created for certificate "+file+"!"),
		strings.Contains(out, "Transaction updated for certificate "+file+"!"):
	case strings.Contains(out, "not referenced by the configuration"):
		return fmt.Errorf("set ssl cert %s: %w (add it to a crt/crt-list and reload once)", file, ErrNotLoaded)
	case out == "":
		return fmt.Errorf("set ssl cert %s: HAProxy closed the connection without an answer (payload over tune.bufsize?)", file)
	default:
		r.abort(file)
		return fmt.Errorf("set ssl cert %s: %s", file, oneLine(out))
	}
	out, err = r.command(ctx, "commit ssl cert "+file+"\n")
	if err != nil {
		r.abort(file)
		return err
	}
	if !strings.Contains(out, "Success!") {
		r.abort(file)
		return fmt.Errorf("commit ssl cert %s: %s", file, oneLine(out))
	}
	return nil
}

// waitForOthers returns once no transaction is open on another file (one
// on file itself is a leftover of ours and is aborted): a set during
// another's transaction would change that transaction.
func (r *RuntimeReloader) waitForOthers(ctx context.Context, file string) error {
	lastOpen := ""
	for {
		out, err := r.command(ctx, "show ssl cert\n")
		if err != nil {
			if lastOpen != "" && ctx.Err() != nil {
				// The deadline hit while asking again: the reason is still
				// the other transaction.
				return fmt.Errorf("haproxy: a certificate transaction on %s stayed open: %w", lastOpen, ctx.Err())
			}
			return err
		}
		open := openTransaction(out)
		lastOpen = open
		switch open {
		case "":
			return nil
		case file:
			r.abort(file)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("haproxy: a certificate transaction on %s stayed open: %w", open, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// openTransaction finds the file of the ongoing transaction in the answer
// to "show ssl cert": a "# transaction" line, then "*<file>".
func openTransaction(show string) string {
	lines := strings.Split(show, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "# transaction" && i+1 < len(lines) {
			return strings.TrimPrefix(strings.TrimSpace(lines[i+1]), "*")
		}
	}
	return ""
}

func (r *RuntimeReloader) abort(file string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = r.command(ctx, "abort ssl cert "+file+"\n")
}

// command sends one command on a new connection (HAProxy's non-interactive
// mode: it answers and closes) and returns the answer.
func (r *RuntimeReloader) command(ctx context.Context, cmd string) (string, error) {
	network := "unix"
	if !filepath.IsAbs(r.Socket) {
		network = "tcp"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, r.Socket)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("haproxy runtime API: send: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: read answer: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// payload is the PEM without empty lines (an empty line ends the payload)
// and carriage returns, ending in a newline.
func payload(pemData []byte) string {
	var b strings.Builder
	for _, l := range bytes.Split(pemData, []byte("\n")) {
		l = bytes.TrimRight(l, "\r")
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " / ")), " ")
}
