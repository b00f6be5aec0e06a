// Package verify proves which certificate a daemon really serves: it makes
// a TLS handshake with the daemon, after the protocol's STARTTLS dance where
// there is one, and compares the leaf certificate it presents with the one
// just installed.
//
// It only looks at the leaf. It does not validate chains, send requests
// beyond what STARTTLS needs, or decide what to do when the daemon serves
// something else; apps do (fall back to a stronger reload, then roll back).
package verify

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// Target is a TLS endpoint to check: Address is host:port, ServerName is
// sent as SNI (and as the XMPP stream's "to", where it is required), and
// StartTLS names the plaintext protocol spoken before TLS: "" (TLS from the
// first byte), "smtp", "imap", "xmpp" (client-to-server) or "postgres".
type Target struct {
	Address    string
	ServerName string
	StartTLS   string
}

// Validate reports whether t can be checked at all: a host:port address, a
// known StartTLS protocol, a server name for XMPP. Config loading calls it so
// that a bad verify block is refused at load time.
func (t Target) Validate() error {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return fmt.Errorf("address %q: %w", t.Address, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("address %q: want host:port", t.Address)
	}
	switch t.StartTLS {
	case "", "smtp", "imap", "postgres":
	case "xmpp":
		if t.ServerName == "" {
			return errors.New("starttls xmpp needs a server name (the XMPP domain)")
		}
	default:
		return fmt.Errorf("unknown starttls protocol %q (want smtp, imap, xmpp, postgres or none)", t.StartTLS)
	}
	if strings.ContainsAny(t.ServerName, " \t\r\n") {
		return fmt.Errorf("server name %q contains white space", t.ServerName)
	}
	return nil
}

// String describes t for messages, e.g. "127.0.0.1:5222 (xmpp starttls,
// server name example.org)".
func (t Target) String() string {
	var extra []string
	if t.StartTLS != "" {
		extra = append(extra, t.StartTLS+" starttls")
	}
	if t.ServerName != "" {
		extra = append(extra, "server name "+t.ServerName)
	}
	if len(extra) == 0 {
		return t.Address
	}
	return t.Address + " (" + strings.Join(extra, ", ") + ")"
}

// Fingerprint returns the SHA-256 of cert's DER encoding in lower-case hex,
// the form Expect compares.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// maxPlaintext bounds what a server may send before TLS starts.
const maxPlaintext = 64 << 10

// Leaf connects to t, speaks its STARTTLS protocol if any, makes a TLS
// handshake with t.ServerName as SNI and returns the leaf certificate the
// server presented. ctx bounds all of it.
//
// The chain is not verified (InsecureSkipVerify): the question is not
// whether a client would trust the server, but whether the daemon serves the
// very certificate just installed, and comparing the leaf answers that more
// strictly than any chain check. It also works where a chain check cannot:
// a test CA, a clock not yet at NotBefore, an address with no name to match.
// Nothing secret crosses this connection, and it is closed right after the
// handshake.
func Leaf(ctx context.Context, t Target) (*x509.Certificate, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", t, err)
	}
	cert, err := leaf(ctx, t)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		return nil, fmt.Errorf("verify %s: %w", t, err)
	}
	return cert, nil
}

func leaf(ctx context.Context, t Target) (*x509.Certificate, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// Every read and write is bounded by ctx: when it ends, the connection's
	// deadline moves to the past. (Not ctx's deadline set directly: the
	// connection could then time out a moment before ctx reports it, and
	// the error would not say that ctx ended.)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if t.StartTLS != "" {
		if err := startTLS(conn, t); err != nil {
			return nil, fmt.Errorf("%s starttls: %w", t.StartTLS, err)
		}
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName:         t.ServerName,
		InsecureSkipVerify: true, // see Leaf: the leaf is compared, not the chain
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("tls handshake: server presented no certificate")
	}
	return certs[0], nil
}

// startTLS speaks t.StartTLS on conn up to the point where the TLS handshake
// starts.
func startTLS(conn net.Conn, t Target) error {
	if t.StartTLS == "postgres" {
		return startPostgres(conn)
	}
	// The reader must not hold on to bytes that belong to the TLS handshake;
	// a server sends none before the client's hello, and one that does is
	// refused below rather than silently losing them.
	r := bufio.NewReader(io.LimitReader(conn, maxPlaintext))
	var err error
	switch t.StartTLS {
	case "smtp":
		err = startSMTP(conn, r)
	case "imap":
		err = startIMAP(conn, r)
	case "xmpp":
		err = startXMPP(conn, r, t.ServerName)
	}
	if err != nil {
		return err
	}
	if r.Buffered() > 0 {
		return errors.New("server sent data before the tls handshake")
	}
	return nil
}

// startSMTP: 220 greeting, EHLO, check that STARTTLS is offered, STARTTLS,
// 220 (RFC 3207).
func startSMTP(conn net.Conn, r *bufio.Reader) error {
	text := textproto.NewReader(r)
	if _, _, err := text.ReadResponse(220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", addressLiteral(conn.LocalAddr())); err != nil {
		return fmt.Errorf("send EHLO: %w", err)
	}
	_, msg, err := text.ReadResponse(250)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return errors.New("server does not offer STARTTLS in its EHLO reply")
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return fmt.Errorf("send STARTTLS: %w", err)
	}
	if _, _, err := text.ReadResponse(220); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	return nil
}

// addressLiteral is the EHLO argument for the local end: RFC 5321 wants a
// domain or an address literal, and the address is all a checker has.
func addressLiteral(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	switch {
	case !ok:
		return "localhost"
	case tcp.IP.To4() != nil:
		return "[" + tcp.IP.String() + "]"
	default:
		return "[IPv6:" + tcp.IP.String() + "]"
	}
}

// startIMAP: "* OK" greeting, "a STARTTLS", untagged lines, "a OK"
// (RFC 3501 section 6.2.1).
func startIMAP(conn net.Conn, r *bufio.Reader) error {
	text := textproto.NewReader(r)
	greeting, err := text.ReadLine()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if !hasPrefixFold(greeting, "* OK") {
		return fmt.Errorf("greeting: want \"* OK\", got %q", greeting)
	}
	if _, err := io.WriteString(conn, "a STARTTLS\r\n"); err != nil {
		return fmt.Errorf("send STARTTLS: %w", err)
	}
	for {
		line, err := text.ReadLine()
		if err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
		switch {
		case strings.HasPrefix(line, "* "):
			continue
		case hasPrefixFold(line, "a OK"):
			return nil
		default:
			return fmt.Errorf("STARTTLS: server answered %q", line)
		}
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

const (
	nsStreams = "http://etherx.jabber.org/streams"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
)

// startXMPP: open a client stream to domain, wait for <starttls/> among the
// stream features, send <starttls/>, wait for <proceed/> (RFC 6120 section 5).
func startXMPP(conn net.Conn, r *bufio.Reader, domain string) error {
	var to strings.Builder
	if err := xml.EscapeText(&to, []byte(domain)); err != nil {
		return err
	}
	header := "<?xml version='1.0'?><stream:stream to='" + to.String() + "' version='1.0' " +
		"xmlns='jabber:client' xmlns:stream='" + nsStreams + "'>"
	if _, err := io.WriteString(conn, header); err != nil {
		return fmt.Errorf("send stream header: %w", err)
	}
	d := xml.NewDecoder(r)
	if err := xmppFeatures(d); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "<starttls xmlns='"+nsTLS+"'/>"); err != nil {
		return fmt.Errorf("send starttls: %w", err)
	}
	for {
		el, err := nextElement(d)
		if err != nil {
			return fmt.Errorf("wait for proceed: %w", err)
		}
		switch {
		case el.Name == xml.Name{Space: nsTLS, Local: "proceed"}:
			return nil
		case el.Name == xml.Name{Space: nsTLS, Local: "failure"}:
			return errors.New("server answered starttls with <failure/>")
		case el.Name == xml.Name{Space: nsStreams, Local: "error"}:
			return streamError(d)
		}
		if err := d.Skip(); err != nil {
			return fmt.Errorf("wait for proceed: %w", err)
		}
	}
}

// xmppFeatures reads the server's stream header and its features, and
// fails unless starttls is among them.
func xmppFeatures(d *xml.Decoder) error {
	el, err := nextElement(d)
	if err != nil {
		return fmt.Errorf("read stream header: %w", err)
	}
	if el.Name != (xml.Name{Space: nsStreams, Local: "stream"}) {
		return fmt.Errorf("read stream header: got <%s>", el.Name.Local)
	}
	for {
		el, err := nextElement(d)
		if err != nil {
			return fmt.Errorf("read stream features: %w", err)
		}
		switch el.Name {
		case xml.Name{Space: nsStreams, Local: "error"}:
			return streamError(d)
		case xml.Name{Space: nsStreams, Local: "features"}:
			return findStartTLS(d)
		}
		if err := d.Skip(); err != nil {
			return fmt.Errorf("read stream features: %w", err)
		}
	}
}

// findStartTLS reads the children of <stream:features>.
func findStartTLS(d *xml.Decoder) error {
	found := false
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("read stream features: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name == (xml.Name{Space: nsTLS, Local: "starttls"}) {
				found = true
			}
			if err := d.Skip(); err != nil {
				return fmt.Errorf("read stream features: %w", err)
			}
		case xml.EndElement:
			if !found {
				return errors.New("server does not offer starttls in its stream features")
			}
			return nil
		}
	}
}

// streamError turns the <stream:error> being read into an error naming its
// condition, such as host-unknown for a domain the server does not serve.
func streamError(d *xml.Decoder) error {
	var e struct {
		Inner []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	}
	start := xml.StartElement{Name: xml.Name{Space: nsStreams, Local: "error"}}
	if err := d.DecodeElement(&e, &start); err != nil {
		return fmt.Errorf("server sent a stream error: %w", err)
	}
	var conds []string
	for _, c := range e.Inner {
		if c.XMLName.Local == "text" && c.Text != "" {
			conds = append(conds, fmt.Sprintf("%q", c.Text))
		} else {
			conds = append(conds, c.XMLName.Local)
		}
	}
	return fmt.Errorf("server sent a stream error: %s", strings.Join(conds, " "))
}

// nextElement returns the next start element, skipping the XML
// declaration, white space and comments.
func nextElement(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return tok, nil
		case xml.EndElement:
			return xml.StartElement{}, fmt.Errorf("server closed <%s>", tok.Name.Local)
		}
	}
}

// startPostgres sends an SSLRequest and expects 'S' (PostgreSQL protocol,
// "SSL Session Encryption"). The one-byte answer is read unbuffered: the
// handshake follows at once.
func startPostgres(conn net.Conn) error {
	sslRequest := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // length 8, code 80877103
	if _, err := conn.Write(sslRequest); err != nil {
		return fmt.Errorf("send SSLRequest: %w", err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return fmt.Errorf("read SSLRequest answer: %w", err)
	}
	switch answer[0] {
	case 'S':
		return nil
	case 'N':
		return errors.New("server does not accept SSL (is ssl = on in postgresql.conf?)")
	default:
		return fmt.Errorf("unexpected answer %q to SSLRequest", answer[0])
	}
}

// Expect checks, until ctx ends, whether t serves the certificate whose
// SHA-256 fingerprint is want (hex, any case, colons allowed), and returns
// nil as soon as it does. It checks at once, then after 20ms, the pause
// growing by half each time up to retryEvery (checks at 0, 20, 50, 95 ms...):
// a daemon that switches in tens of milliseconds is seen to (the apache
// type's 100ms window gets four looks), and one that takes seconds is not
// asked hundreds of times. Each attempt is bounded by
// ctx and by 10 seconds, so a daemon that hangs while restarting does not
// use up the budget in one go. When ctx ends first, the error says what was
// served last (fingerprint, subject, expiry) or why nothing was, against
// what was expected, and wraps ctx's error. retryEvery <= 0 means 500ms.
func Expect(ctx context.Context, t Target, want string, retryEvery time.Duration) error {
	norm := strings.ToLower(strings.ReplaceAll(want, ":", ""))
	if b, err := hex.DecodeString(norm); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("verify %s: invalid SHA-256 fingerprint %q", t, want)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("verify %s: %w", t, err)
	}
	if retryEvery <= 0 {
		retryEvery = 500 * time.Millisecond
	}
	var served *x509.Certificate // the last leaf served, nil if none yet
	var last error               // why the last attempt got no leaf, nil if it got one
	pause := min(firstRetry, retryEvery)
	for {
		// Only a deadline well before ctx's own: with the same deadline the
		// attempt's timer could fire first and its failure would look like
		// the daemon's rather than like ctx ending.
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > attemptTimeout {
			actx, cancel = context.WithTimeout(ctx, attemptTimeout)
		}
		cert, err := leaf(actx, t)
		cancel()
		// An attempt ctx cut short may return before ctx says so (its
		// socket deadline is ctx's): a passed deadline counts too.
		cut := ctx.Err() != nil
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			cut = true
		}
		switch {
		case err == nil && Fingerprint(cert) == norm:
			return nil
		case err == nil:
			served, last = cert, nil
		case !cut || last == nil && served == nil:
			// Keep the failure of the attempt ctx cut short only if
			// there is nothing more telling.
			last = err
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return expectError(t, norm, served, last, context.Cause(ctx))
		case <-timer.C:
		}
		pause = min(pause*3/2, retryEvery)
	}
}

// attemptTimeout bounds one attempt of Expect; firstRetry is its first
// pause.
const (
	attemptTimeout = 10 * time.Second
	firstRetry     = 20 * time.Millisecond
)

func expectError(t Target, want string, served *x509.Certificate, last, cause error) error {
	switch {
	case served != nil && last == nil:
		return fmt.Errorf("verify %s: served %s, want certificate %s: %w", t, describe(served), want, cause)
	case served != nil:
		return fmt.Errorf("verify %s: served %s, want certificate %s, then the last attempt failed: %v: %w",
			t, describe(served), want, last, cause)
	default:
		return fmt.Errorf("verify %s: no certificate served, want certificate %s: %v: %w", t, want, last, cause)
	}
}

// describe names a served certificate for an error message.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("certificate %s (subject %q, expires %s)",
		Fingerprint(c), c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339))
}
