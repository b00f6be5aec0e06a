// Package wire delivers one Notify call to the certbus daemon on a fresh
// connection of its own, with the whole exchange written ahead of any
// answer: the SASL EXTERNAL lines, BEGIN and Hello when it connects, the
// call as soon as it is built, pipelined as the D-Bus specification allows
// (sd-bus connects the same way). A hook then waits for the bus once
// instead of the six times of a godbus connection (auth query, AUTH, DATA,
// NEGOTIATE_UNIX_FD, Hello, then the call).
//
// It is what a hook process links, so it links little: no godbus, no net.
// It marshals the two messages it sends and the header of what it reads
// itself (message.go), and drives a blocking unix socket with system
// calls, its deadline set as the socket's send and receive timeouts. It
// speaks unix sockets and EXTERNAL only, which is what a system bus
// offers: anything else is ErrNotSent, and the caller uses a full godbus
// connection. It is not a D-Bus client: no signals, no second call, no
// file descriptors.
package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The daemon's names (DESIGN section 2), here so that this package needs
// nothing of package bus, which takes them from here.
const (
	Name      = "org.certbus.Dispatcher1"
	Path      = "/org/certbus/Dispatcher1"
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
// may send one Notify. It is used by one goroutine.
type Conn struct {
	ctx      context.Context
	deadline time.Time
	stop     func() bool

	mu sync.Mutex // fd against the context's end
	fd int        // -1 once closed

	buf []byte // what was read and not yet used
}

// Dial connects to bus and writes the SASL EXTERNAL lines, BEGIN and
// Hello without waiting for an answer, so that the bus authenticates the
// connection while the caller prepares its call (a hook dials first, then
// reads its environment). ctx bounds everything the connection does: its
// deadline (two minutes without one) is the socket's timeout, and its end
// shuts the socket down under a read or write waiting on it. Its errors
// are ErrNotSent (wrapped: no call went out, a full client may try), ctx's
// error, or an error encoding Hello.
func Dial(ctx context.Context, bus string) (*Conn, error) {
	addr, err := socket(bus)
	if err != nil {
		return nil, err
	}
	req := []byte("\x00AUTH EXTERNAL " + hexString(strconv.Itoa(os.Geteuid())) + "\r\nBEGIN\r\n")
	req, err = appendCall(req, helloSerial, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", "", nil)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, notSent(ctx, os.NewSyscallError("socket", err))
	}
	c := &Conn{ctx: ctx, deadline: deadline, fd: fd}
	c.stop = context.AfterFunc(ctx, c.interrupt)
	if err := c.connect(addr); err != nil {
		c.Close()
		return nil, notSent(ctx, err)
	}
	if _, err := c.write(req); err != nil {
		c.Close()
		// Nothing of a call went out: authentication and Hello
		// change nothing.
		return nil, notSent(ctx, err)
	}
	return c, nil
}

// connect connects the socket to addr, "@name" for an abstract socket
// (package syscall's convention too). A connect waiting for room in the
// bus's backlog is not woken by shutdown(2) when ctx ends, so it waits
// in slices of connectSlice and looks at ctx between them.
func (c *Conn) connect(addr string) error {
	sa := &syscall.SockaddrUnix{Name: addr}
	for retried := false; ; retried = true {
		if err := c.armAtMost(syscall.SO_SNDTIMEO, connectSlice); err != nil {
			return err
		}
		err := syscall.Connect(c.fd, sa)
		switch {
		case err == nil || (retried && err == syscall.EISCONN):
			return nil
		case err == syscall.EINTR:
			// A socket with a timeout is not restarted after a
			// signal (signal(7)); the Go runtime sends some.
		case err == syscall.EAGAIN:
			// The backlog stayed full for a slice: the next
			// arm says whether ctx ended or the deadline passed.
		default:
			return os.NewSyscallError("connect", err)
		}
	}
}

// connectSlice bounds how long a cancelled connect goes on waiting.
const connectSlice = 100 * time.Millisecond

// arm sets the socket's send or receive timeout to what is left until the
// deadline. It first returns ctx's error once ctx is done, so that no read,
// write or connect starts after ctx's end (whose shutdown of the socket
// could have come before the connect, or found it waiting on the backlog,
// where shutdown does not wake it).
func (c *Conn) arm(opt int) error { return c.armAtMost(opt, 0) }

// armAtMost is arm with the timeout cut to at most limit (0: no limit).
func (c *Conn) armAtMost(opt int, limit time.Duration) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	left := time.Until(c.deadline)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	if limit > 0 {
		left = min(left, limit)
	}
	tv := syscall.NsecToTimeval(left.Nanoseconds())
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1 // zero would be no timeout at all
	}
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	return nil
}

// write writes all of b and returns how much of it went out.
func (c *Conn) write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		if err := c.arm(syscall.SO_SNDTIMEO); err != nil {
			return done, err
		}
		// Go's runtime turns SIGPIPE into EPIPE for descriptors other
		// than 1 and 2.
		n, err := syscall.Write(c.fd, b[done:])
		if n > 0 {
			done += n
		}
		switch {
		case err == nil && n == 0:
			return done, io.ErrShortWrite
		case err == nil, err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return done, os.ErrDeadlineExceeded
		default:
			return done, os.NewSyscallError("write", err)
		}
	}
	return done, nil
}

// fill reads what the bus has sent into c.buf, at least a byte.
func (c *Conn) fill() error {
	if len(c.buf) == cap(c.buf) {
		c.buf = append(c.buf, make([]byte, 4096)...)[:len(c.buf)]
	}
	for {
		if err := c.arm(syscall.SO_RCVTIMEO); err != nil {
			return err
		}
		n, err := syscall.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return os.ErrDeadlineExceeded
		case err != nil:
			return os.NewSyscallError("read", err)
		case n == 0:
			return io.ErrUnexpectedEOF // the bus hung up, or ctx ended
		}
		c.buf = c.buf[:len(c.buf)+n]
		return nil
	}
}

// line reads the bus's first SASL line, without its CR LF.
func (c *Conn) line() (string, error) {
	for {
		if i := bytes.IndexByte(c.buf, '\n'); i >= 0 {
			l := string(c.buf[:i])
			c.buf = c.buf[i+1:]
			return strings.TrimSuffix(l, "\r"), nil
		}
		if len(c.buf) > 512 {
			return "", fmt.Errorf("%w: %q is no SASL answer", errMalformed, c.buf[:32])
		}
		if err := c.fill(); err != nil {
			return "", err
		}
	}
}

// message reads the next whole message.
func (c *Conn) message() (*header, error) {
	for len(c.buf) < 16 {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	n, err := messageLen(c.buf)
	if err != nil {
		return nil, err
	}
	if cap(c.buf) < n {
		c.buf = append(make([]byte, 0, n), c.buf...)
	}
	for len(c.buf) < n {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	m := c.buf[:n:n]
	c.buf = c.buf[n:]
	return parseHeader(m)
}

// interrupt wakes a read or write waiting on the socket when ctx ends.
func (c *Conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
	}
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		_ = syscall.Close(c.fd)
		c.fd = -1
	}
}

// Notify sends Notify(op, domains) and returns the event id; errors as for
// the package's Notify. It may be called once.
func (c *Conn) Notify(op string, domains map[string]map[string]string) (string, error) {
	req, err := appendCall(nil, notifySerial, Name, Path, Interface, "Notify", "sa{sa{ss}}", domainsBody(op, domains))
	if err != nil {
		return "", err
	}
	if n, err := c.write(req); err != nil {
		if n == 0 {
			// Not a byte of the call went out (the bus may have
			// refused the greeting and closed).
			return "", notSent(c.ctx, err)
		}
		return "", sent(c.ctx, err)
	}
	line, err := c.line()
	if err != nil {
		return "", sent(c.ctx, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		// REJECTED or ERROR: the bus dropped everything after AUTH.
		return "", fmt.Errorf("%w: the bus answered %q", ErrNotSent, line)
	}
	for {
		m, err := c.message()
		if err != nil {
			return "", sent(c.ctx, err)
		}
		switch {
		case m.replySerial == 0:
			continue // NameAcquired and other signals
		case m.typ == typeError && m.replySerial == helloSerial:
			// The bus refused Hello (LimitsExceeded, say) and
			// drops a connection that sends anything before it:
			// the call was never routed.
			return "", fmt.Errorf("%w: the bus answered Hello with %s", ErrNotSent, m.errorName)
		case m.typ == typeError:
			e := &Error{Name: m.errorName}
			e.Message, _ = m.firstString()
			return "", e
		case m.replySerial != notifySerial || m.typ != typeMethodReturn:
			continue // Hello's answer
		case m.signature != "s":
			return "", &SentError{Err: fmt.Errorf("Notify answered with signature %q, want the event id (s)", m.signature)}
		}
		id, ok := m.firstString()
		if !ok {
			return "", &SentError{Err: fmt.Errorf("Notify's answer: %w", errMalformed)}
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

// hexString is s in lower-case hex, as SASL EXTERNAL wants the uid.
func hexString(s string) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, digits[s[i]>>4], digits[s[i]&15])
	}
	return string(out)
}

// socket resolves bus to the path of a unix socket ("@name" for an
// abstract one), the first unix entry of the address that has one. The
// address's guid= is not compared with the one the bus answers: the call
// is written before that answer is read (pipelined), so a mismatch could
// only be reported after the fact; the path is what the user named.
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
			v, ok := unescape(v)
			if !ok {
				break
			}
			switch k {
			case "path":
				if strings.IndexByte(v, 0) >= 0 {
					return "", fmt.Errorf("%w: a NUL byte in the socket path of %q", ErrNotSent, addr)
				}
				if strings.HasPrefix(v, "@") {
					v = "./" + v // a file named @..., not an abstract socket
				}
				return v, nil
			case "abstract":
				return "@" + v, nil
			}
		}
	}
	return "", fmt.Errorf("%w: no unix socket in %q", ErrNotSent, addr)
}

// unescape undoes a D-Bus address value's %XX escapes; ok is false for a
// malformed one.
func unescape(v string) (string, bool) {
	if !strings.Contains(v, "%") {
		return v, true
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			out = append(out, v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", false
		}
		hi, lo := unhex(v[i+1]), unhex(v[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		out = append(out, byte(hi<<4|lo))
		i += 2
	}
	return string(out), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
