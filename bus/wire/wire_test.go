package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/internal/testutil"
)

func TestSocket(t *testing.T) {
	tests := []struct {
		name, bus, sysEnv, sessEnv, want string
		unsupported                      bool
	}{
		{name: "system default", bus: "system", want: "/run/dbus/system_bus_socket"},
		{name: "empty is system", bus: "", want: "/run/dbus/system_bus_socket"},
		{name: "system from env", bus: "system", sysEnv: "unix:path=/x/sys", want: "/x/sys"},
		{name: "session from env", bus: "session", sessEnv: "unix:path=/run/user/0/bus", want: "/run/user/0/bus"},
		{name: "session unset", bus: "session", unsupported: true},
		{name: "path with guid", bus: "unix:path=/a/b,guid=0123", want: "/a/b"},
		{name: "escaped path", bus: "unix:path=/a%20b/c", want: "/a b/c"},
		{name: "abstract", bus: "unix:abstract=/tmp/dbus-x", want: "@/tmp/dbus-x"},
		{name: "first unix entry", bus: "tcp:host=127.0.0.1,port=1;unix:path=/s", want: "/s"},
		{name: "several unix entries", bus: "unix:path=/first;unix:path=/second", want: "/first"},
		{name: "escaped abstract", bus: "unix:abstract=/tmp/a%2cb", want: "@/tmp/a,b"},
		{name: "a file named @x", bus: "unix:path=@x", want: "./@x"},
		{name: "cut escape", bus: "unix:path=/a%4", unsupported: true},
		{name: "bad escape", bus: "unix:path=/a%zz", unsupported: true},
		{name: "NUL in the path", bus: "unix:path=/a%00b", unsupported: true},
		{name: "tcp only", bus: "tcp:host=127.0.0.1,port=1", unsupported: true},
		{name: "unix without path", bus: "unix:tmpdir=/tmp", unsupported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", tt.sysEnv)
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", tt.sessEnv)
			got, err := socket(tt.bus)
			if tt.unsupported {
				if !errors.Is(err, ErrNotSent) {
					t.Fatalf("socket(%q) = %q, %v; want ErrNotSent", tt.bus, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("socket(%q) = %q, %v; want %q", tt.bus, got, err, tt.want)
			}
		})
	}
}

// dispatcher stands in for the daemon's object: it records what Notify
// received and answers as the test needs.
type dispatcher struct {
	mu      sync.Mutex
	got     []map[string]map[string]string
	sender  []string
	release chan struct{}
}

func (d *dispatcher) Notify(sender dbus.Sender, op string, domains map[string]map[string]string) (string, *dbus.Error) {
	switch op {
	case "refuse":
		return "", dbus.NewError("org.certbus.Dispatcher1.Error.InvalidArgument", []any{"domain a.test: not covered"})
	case "hang":
		<-d.release
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, domains)
	d.sender = append(d.sender, string(sender))
	return "id-" + op, nil
}

func startDispatcher(t *testing.T) (*testutil.Bus, *dispatcher) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	conn := b.Connect(t)
	d := &dispatcher{release: make(chan struct{})}
	t.Cleanup(func() { close(d.release) })
	if err := conn.Export(d, Path, Interface); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(Name, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: %v %v", reply, err)
	}
	return b, d
}

func TestNotify(t *testing.T) {
	b, d := startDispatcher(t)
	ctx := context.Background()
	domains := map[string]map[string]string{
		"a.test":     {"certificate": "/le/live/a/cert.pem", "private_key": "/le/live/a/privkey.pem"},
		"www.a.test": {"certificate": "/le/live/a/cert.pem", "private_key": "/le/live/a/privkey.pem"},
	}

	id, err := Notify(ctx, b.Address, "deploy", domains)
	if err != nil || id != "id-deploy" {
		t.Fatalf("Notify = %q, %v; want id-deploy", id, err)
	}
	if id, err := Notify(ctx, b.Address, "post", nil); err != nil || id != "id-post" {
		t.Fatalf("Notify(post, nil) = %q, %v", id, err)
	}
	d.mu.Lock()
	if len(d.got) != 2 || !reflect.DeepEqual(d.got[0], domains) || len(d.got[1]) != 0 {
		t.Errorf("the daemon received %v, want %v then an empty map", d.got, domains)
	}
	if len(d.sender) != 2 || !strings.HasPrefix(d.sender[0], ":") || d.sender[0] == d.sender[1] {
		t.Errorf("senders %v: want two unique names (a connection per call)", d.sender)
	}
	d.mu.Unlock()

	_, err = Notify(ctx, b.Address, "refuse", nil)
	var we *Error
	if !errors.As(err, &we) || we.Name != "org.certbus.Dispatcher1.Error.InvalidArgument" || we.Message != "domain a.test: not covered" {
		t.Errorf("refused call: %#v, want the daemon's named error and message", err)
	}

	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Notify(tctx, b.Address, "hang", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung daemon: %v, want the context's deadline", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("hung daemon: gave up after %v, want about the 200ms deadline", waited)
	}
}

func TestNotifyNoDaemon(t *testing.T) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	_, err := Notify(context.Background(), b.Address, "pre", nil)
	var we *Error
	if !errors.As(err, &we) || we.Name != "org.freedesktop.DBus.Error.ServiceUnknown" {
		t.Errorf("name not owned: %#v, want the bus's ServiceUnknown", err)
	}

	missing := "unix:path=" + filepath.Join(t.TempDir(), "no-bus")
	_, err = Notify(context.Background(), missing, "pre", nil)
	if !errors.Is(err, ErrNotSent) {
		t.Errorf("no bus: %#v, want ErrNotSent (nothing sent; a full client tries every entry)", err)
	}

	if _, err := Notify(context.Background(), "tcp:host=127.0.0.1,port=1", "pre", nil); !errors.Is(err, ErrNotSent) {
		t.Errorf("tcp address: %v, want ErrNotSent", err)
	}
}

// fakeBus listens on a unix socket that is not a bus, hands its first
// connection to serve, and returns its address.
func fakeBus(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "bus")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return "unix:path=" + sock
}

// readCall reads what the client sends until its Notify call has come;
// false if the connection ended first.
func readCall(c net.Conn) bool {
	buf := make([]byte, 8192)
	for got := 0; !bytes.Contains(buf[:got], []byte("Notify")); {
		n, err := c.Read(buf[got:])
		if err != nil {
			return false
		}
		got += n
	}
	return true
}

// TestNotifyAuthRefused uses a listener that is not a bus: a bus that does
// not offer EXTERNAL cannot be configured from the test's bus config, which
// always has it. What matters is the answer: ErrNotSent, so the caller
// falls back to a full client, nothing having been taken.
func TestNotifyAuthRefused(t *testing.T) {
	addr := fakeBus(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte("REJECTED DBUS_COOKIE_SHA1\r\n"))
	})
	if _, err := Notify(context.Background(), addr, "pre", nil); !errors.Is(err, ErrNotSent) {
		t.Errorf("EXTERNAL refused: %v, want ErrNotSent", err)
	}
}

// Dial writes the greeting (AUTH, BEGIN, Hello) before the call is built,
// so the bus works on it meanwhile; Conn.Notify then writes the call on
// the same connection.
func TestDialGreetsBeforeTheCall(t *testing.T) {
	greeting, call := make(chan []byte, 1), make(chan []byte, 1)
	addr := fakeBus(t, func(c net.Conn) {
		read := func() []byte {
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			return buf[:n]
		}
		greeting <- read()
		call <- read()
		c.Write([]byte("REJECTED EXTERNAL\r\n"))
	})
	conn, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case g := <-greeting:
		if !strings.HasPrefix(string(g), "\x00AUTH EXTERNAL ") || !strings.Contains(string(g), "\r\nBEGIN\r\n") || !strings.Contains(string(g), "Hello") {
			t.Errorf("greeting %q: want AUTH EXTERNAL, BEGIN and Hello", g)
		}
		if strings.Contains(string(g), "Notify") {
			t.Errorf("the call went out with the greeting")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing written by Dial")
	}
	if _, err := conn.Notify("pre", nil); !errors.Is(err, ErrNotSent) {
		t.Errorf("Notify after a refused AUTH: %v, want ErrNotSent", err)
	}
	if c := <-call; !strings.Contains(string(c), "Notify") {
		t.Errorf("call %q: want the Notify message", c)
	}
}

// fullBacklog listens on a unix socket with a backlog of 0 and fills it
// with one connection nobody accepts: the next connect waits for room.
func fullBacklog(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "bus")
	l, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(l) })
	if err := syscall.Bind(l, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(l, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return "unix:path=" + sock
}

// A deadline that passes before or while dialling is the deadline, not
// ErrNotSent: a hook must not hand over and wait as long again.
func TestDialDeadline(t *testing.T) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := Dial(ctx, b.Address); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotSent) {
		t.Errorf("Dial past the deadline: %v, want context.DeadlineExceeded", err)
	}
	if err := notSent(context.Background(), os.ErrDeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the socket's deadline: %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := Dial(ctx, fullBacklog(t)); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotSent) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial whose deadline passes in connect: %v, want context.DeadlineExceeded", err)
	}
}

// Cancelling the context wakes a connect waiting on a full backlog, which
// shutdown(2) does not: well before the deadline.
func TestDialCancelledInConnect(t *testing.T) {
	addr := fullBacklog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	c, err := Dial(ctx, addr)
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled in connect: %v, want context.Canceled", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("cancelled after 100ms, returned after %v", waited)
	}
}

// A bus that refuses Hello drops the connection before routing the call:
// nothing was sent, and a full client may try.
func TestNotifyHelloRefused(t *testing.T) {
	answer := []byte("OK 0123456789abcdef0123456789abcdef\r\n")
	answer = append(answer, godbusMessage(t, binary.LittleEndian, dbus.TypeError, 1, map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(helloSerial)),
		dbus.FieldErrorName:   dbus.MakeVariant("org.freedesktop.DBus.Error.LimitsExceeded"),
	}, "too many connections")...)
	addr := fakeBus(t, func(c net.Conn) {
		if readCall(c) {
			c.Write(answer)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Notify(ctx, addr, "pre", nil)
	var we *Error
	if !errors.Is(err, ErrNotSent) || errors.As(err, &we) || !strings.Contains(err.Error(), "LimitsExceeded") {
		t.Errorf("Hello refused: %v, want ErrNotSent naming LimitsExceeded", err)
	}
}

// The answer may come in any pieces: the greeting's OK line, Hello's
// return, NameAcquired and then the call's return, a few bytes at a time.
func TestNotifyReadsAnswersInPieces(t *testing.T) {
	reply := func(serial uint32, typ dbus.Type, fields map[dbus.HeaderField]dbus.Variant, body ...any) []byte {
		fields[dbus.FieldReplySerial] = dbus.MakeVariant(serial)
		return godbusMessage(t, binary.LittleEndian, typ, 100+serial, fields, body...)
	}
	answer := []byte("OK 0123456789abcdef0123456789abcdef\r\n")
	answer = append(answer, reply(helloSerial, dbus.TypeMethodReply, map[dbus.HeaderField]dbus.Variant{}, ":1.9")...)
	answer = append(answer, godbusMessage(t, binary.BigEndian, dbus.TypeSignal, 3, map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:      dbus.MakeVariant(dbus.ObjectPath("/org/freedesktop/DBus")),
		dbus.FieldInterface: dbus.MakeVariant("org.freedesktop.DBus"),
		dbus.FieldMember:    dbus.MakeVariant("NameAcquired"),
	}, ":1.9")...)
	tests := []struct {
		name  string
		last  []byte
		check func(id string, err error) bool
	}{
		{"the event id", reply(notifySerial, dbus.TypeMethodReply, map[dbus.HeaderField]dbus.Variant{}, "the-id"),
			func(id string, err error) bool { return err == nil && id == "the-id" }},
		{"the daemon's error", reply(notifySerial, dbus.TypeError, map[dbus.HeaderField]dbus.Variant{
			dbus.FieldErrorName: dbus.MakeVariant("org.certbus.Dispatcher1.Error.ShuttingDown")}, "stopping"),
			func(_ string, err error) bool {
				var we *Error
				return errors.As(err, &we) && we.Name == "org.certbus.Dispatcher1.Error.ShuttingDown" && we.Message == "stopping"
			}},
		{"an answer of the wrong type", reply(notifySerial, dbus.TypeMethodReply, map[dbus.HeaderField]dbus.Variant{}, uint32(1)),
			func(_ string, err error) bool {
				var se *SentError
				return errors.As(err, &se) && strings.Contains(err.Error(), `signature "u"`)
			}},
		{"not D-Bus", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"),
			func(_ string, err error) bool {
				var se *SentError
				return errors.As(err, &se) && errors.Is(err, errMalformed)
			}},
		{"hung up midway", reply(notifySerial, dbus.TypeMethodReply, map[dbus.HeaderField]dbus.Variant{}, "the-id")[:40],
			func(_ string, err error) bool {
				var se *SentError
				return errors.As(err, &se)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := append(append([]byte(nil), answer...), tt.last...)
			addr := fakeBus(t, func(c net.Conn) {
				if !readCall(c) {
					return
				}
				for i := 0; i < len(all); i += 7 {
					if _, err := c.Write(all[i:min(i+7, len(all))]); err != nil {
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id, err := Notify(ctx, addr, "deploy", map[string]map[string]string{"a.test": {"certificate": "/c"}})
			if !tt.check(id, err) {
				t.Errorf("Notify = %q, %v", id, err)
			}
		})
	}
}

// Cancelling the context (no deadline) wakes a call waiting for its
// answer.
func TestNotifyCancelled(t *testing.T) {
	b, _ := startDispatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Notify(ctx, b.Address, "hang", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("cancelled after 100ms, returned after %v", waited)
	}
}

// A peer that never ends its SASL line is not waited on for ever.
func TestNotifyEndlessLine(t *testing.T) {
	addr := fakeBus(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		c.Write(bytes.Repeat([]byte("x"), 4096))
		time.Sleep(10 * time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Notify(ctx, addr, "pre", nil); !errors.Is(err, errMalformed) {
		t.Errorf("endless line: %v, want errMalformed", err)
	}
}
