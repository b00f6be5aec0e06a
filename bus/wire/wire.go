// Package wire delivers one Notify call to the certbus daemon on a fresh
// connection of its own, with the whole exchange written ahead of any
// answer: the SASL EXTERNAL lines, BEGIN and Hello when it connects, the
// call as soon as it is built, pipelined as the D-Bus specification allows
// (sd-bus connects the same way). A hook then waits for the bus once
// instead of the six times of a godbus connection (auth query, AUTH, DATA,
// NEGOTIATE_UNIX_FD, Hello, then the call).
//
// Messages are built and read by godbus; only the three SASL lines are
// written here. It speaks unix sockets and EXTERNAL only, which is what a
// system bus offers: anything else is ErrNotSent, and the caller uses a
// full godbus connection. It is not a D-Bus client: no signals, no second
// call, no file descriptors.
package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// The daemon's names (DESIGN section 2), here so that this package needs
// nothing of package bus, which takes them from here.
const (
	Name      = "org.certbus.Dispatcher1"
	Path      = dbus.ObjectPath("/org/certbus/Dispatcher1")
	Interface = "org.certbus.Dispatcher1"
)

// ErrNotSent means nothing was delivered and a full client should try: the
// address has no unix socket this package speaks, its first one cannot be
// reached (an address may list others), or the bus did not take EXTERNAL.
var ErrNotSent = errors.New("not sent by the pipelining client")

// Error is the D-Bus error the bus or the daemon answered the call with.
type Error struct {
	Name    string
	Message string
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// SentError is a failure after the call was written: the daemon may or may
// not have taken the event.
type SentError struct{ Err error }

func (e *SentError) Error() string { return "after sending: " + e.Err.Error() }
func (e *SentError) Unwrap() error { return e.Err }

const (
	helloSerial  = 1
	notifySerial = 2
)

// Notify sends Notify(op, domains) to the daemon on bus ("system",
// "session" or a D-Bus address) and returns the event id: Dial, then
// Conn.Notify. Errors: ErrNotSent (wrapped), *Error (the answer was an
// error), *SentError, ctx's error, or an error encoding the call (nothing
// sent, and no client would do better).
func Notify(ctx context.Context, bus, op string, domains map[string]map[string]string) (string, error) {
	c, err := Dial(ctx, bus)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.Notify(op, domains)
}

// Conn is a connection that has sent its authentication and Hello, and
// may send one Notify.
type Conn struct {
	ctx  context.Context
	conn net.Conn
	stop func() bool
}

// Dial connects to bus and writes the SASL EXTERNAL lines, BEGIN and
// Hello without waiting for an answer, so that the bus authenticates the
// connection while the caller prepares its call (a hook dials first, then
// reads its environment). ctx bounds everything the connection does. Its
// errors are ErrNotSent (wrapped: no call went out, a full client may
// try), ctx's error, or an error encoding Hello.
func Dial(ctx context.Context, bus string) (*Conn, error) {
	addr, err := socket(bus)
	if err != nil {
		return nil, err
	}
	var req bytes.Buffer
	req.WriteString("\x00AUTH EXTERNAL " + hex.EncodeToString([]byte(strconv.Itoa(os.Geteuid()))) + "\r\nBEGIN\r\n")
	if err := call(&req, helloSerial, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"); err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, notSent(ctx, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	_ = conn.SetDeadline(deadline)
	c := &Conn{ctx: ctx, conn: conn}
	c.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	if _, err := conn.Write(req.Bytes()); err != nil {
		c.Close()
		// Nothing of a call went out: authentication and Hello
		// change nothing.
		return nil, notSent(ctx, err)
	}
	return c, nil
}

// notSent is the error of a failure before the call was written: ctx's
// when it is done, else ErrNotSent.
func notSent(ctx context.Context, err error) error {
	if cerr := ctxErr(ctx, err); cerr != nil {
		return cerr
	}
	return fmt.Errorf("%w: %v", ErrNotSent, err)
}

// ctxErr is ctx's error when err comes from ctx being done: the socket's
// deadline is ctx's, and may strike before ctx itself is marked done.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

// Close closes the connection.
func (c *Conn) Close() {
	c.stop()
	_ = c.conn.Close()
}

// Notify sends Notify(op, domains) and returns the event id; errors as for
// the package's Notify. It may be called once.
func (c *Conn) Notify(op string, domains map[string]map[string]string) (string, error) {
	if domains == nil {
		domains = map[string]map[string]string{}
	}
	var req bytes.Buffer
	if err := call(&req, notifySerial, Name, Path, Interface, "Notify", op, domains); err != nil {
		return "", err
	}
	if n, err := c.conn.Write(req.Bytes()); err != nil {
		if n == 0 {
			// Not a byte of the call went out (the bus may have
			// refused the greeting and closed).
			return "", notSent(c.ctx, err)
		}
		return "", sent(c.ctx, err)
	}
	r := bufio.NewReader(c.conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", sent(c.ctx, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		// REJECTED or ERROR: the bus dropped everything after AUTH.
		return "", fmt.Errorf("%w: the bus answered %q", ErrNotSent, strings.TrimSpace(line))
	}
	for {
		m, err := dbus.DecodeMessage(r)
		if err != nil {
			return "", sent(c.ctx, err)
		}
		v, ok := m.Headers[dbus.FieldReplySerial]
		if !ok {
			continue // NameAcquired and other signals
		}
		serial, _ := v.Value().(uint32)
		if m.Type == dbus.TypeError {
			return "", replyError(m)
		}
		if serial != notifySerial {
			continue
		}
		if len(m.Body) != 1 {
			return "", &SentError{Err: fmt.Errorf("Notify answered with %d values, want the event id", len(m.Body))}
		}
		id, ok := m.Body[0].(string)
		if !ok {
			return "", &SentError{Err: fmt.Errorf("Notify answered with a %T, want the event id", m.Body[0])}
		}
		return id, nil
	}
}

// sent is the error of a failure after the call was (partly) written:
// ctx's when it is done, else a SentError.
func sent(ctx context.Context, err error) error {
	if cerr := ctxErr(ctx, err); cerr != nil {
		return cerr
	}
	return &SentError{Err: err}
}

func replyError(m *dbus.Message) error {
	e := &Error{}
	if v, ok := m.Headers[dbus.FieldErrorName]; ok {
		e.Name, _ = v.Value().(string)
	}
	if len(m.Body) > 0 {
		if s, ok := m.Body[0].(string); ok {
			e.Message = s
		}
	}
	return e
}

// call appends a method call with the given serial. godbus builds the
// message; its serial is set by a connection, so it is written into the
// fixed header here (bytes 8-11, little endian as marshalled).
func call(w *bytes.Buffer, serial uint32, dest string, p dbus.ObjectPath, ifc, member string, args ...any) error {
	h := map[dbus.HeaderField]dbus.Variant{
		dbus.FieldDestination: dbus.MakeVariant(dest),
		dbus.FieldPath:        dbus.MakeVariant(p),
		dbus.FieldInterface:   dbus.MakeVariant(ifc),
		dbus.FieldMember:      dbus.MakeVariant(member),
	}
	if len(args) > 0 {
		h[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(args...))
	}
	m := &dbus.Message{Type: dbus.TypeMethodCall, Headers: h, Body: args}
	start := w.Len()
	if err := m.EncodeTo(w, binary.LittleEndian); err != nil {
		return fmt.Errorf("encode %s: %w", member, err)
	}
	binary.LittleEndian.PutUint32(w.Bytes()[start+8:start+12], serial)
	return nil
}

// socket resolves bus to the path of a unix socket ("@name" for an
// abstract one), the first unix entry of the address that has one.
func socket(bus string) (string, error) {
	addr := bus
	switch bus {
	case "", "system":
		addr = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
		if addr == "" {
			addr = "unix:path=/run/dbus/system_bus_socket"
		}
	case "session":
		addr = os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	}
	for _, entry := range strings.Split(addr, ";") {
		rest, ok := strings.CutPrefix(entry, "unix:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v, err := url.PathUnescape(v)
			if err != nil {
				break
			}
			switch k {
			case "path":
				return v, nil
			case "abstract":
				return "@" + v, nil
			}
		}
	}
	return "", fmt.Errorf("%w: no unix socket in %q", ErrNotSent, addr)
}
