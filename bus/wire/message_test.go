package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

// The call this package writes is the call godbus reads: header fields,
// serial, signature and every value of the body.
func TestCallDecodesWithGodbus(t *testing.T) {
	tests := []struct {
		name    string
		op      string
		domains map[string]map[string]string
	}{
		{name: "no domains", op: "pre", domains: map[string]map[string]string{}},
		{name: "one domain", op: "deploy", domains: map[string]map[string]string{
			"a.test": {"certificate": "/le/live/a/cert.pem", "private_key": "/le/live/a/privkey.pem"},
		}},
		{name: "several, odd lengths", op: "deploy", domains: map[string]map[string]string{
			"a.test":         {"certificate": "/x", "private_key": "/yy", "fullchain": "/zzz", "chain": "/c", "lineage": "/le/live/a"},
			"www.a.test":     {"c": ""},
			"xn--bcher-kva.": {},
			"ünï.test":       {"ключ": "/путь/файл.pem"},
		}},
	}
	// Paths of every length mod 8, so that each padding rule is used.
	padding := map[string]map[string]string{}
	for i := range 9 {
		padding[strings.Repeat("d", i+1)+".test"] = map[string]string{"certificate": "/" + strings.Repeat("p", i), strings.Repeat("k", i+1): "/c"}
	}
	tests = append(tests, struct {
		name    string
		op      string
		domains map[string]map[string]string
	}{name: "every padding", op: "deploy", domains: padding})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendCall([]byte("prefix"), 7, Name, Path, Interface, "Notify", "sa{sa{ss}}", domainsBody(tt.op, tt.domains))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatalf("appendCall lost what it appended to")
			}
			m, err := dbus.DecodeMessage(bytes.NewReader(b[len("prefix"):]))
			if err != nil {
				t.Fatalf("godbus cannot decode the call: %v", err)
			}
			if err := m.IsValid(); err != nil {
				t.Errorf("godbus finds the call invalid: %v", err)
			}
			want := map[dbus.HeaderField]any{
				dbus.FieldPath:        dbus.ObjectPath(Path),
				dbus.FieldInterface:   Interface,
				dbus.FieldMember:      "Notify",
				dbus.FieldDestination: Name,
				dbus.FieldSignature:   dbus.ParseSignatureMust("sa{sa{ss}}"),
			}
			for f, v := range want {
				if got := m.Headers[f].Value(); !reflect.DeepEqual(got, v) {
					t.Errorf("header field %d = %#v, want %#v", f, got, v)
				}
			}
			if len(m.Headers) != len(want) || m.Type != dbus.TypeMethodCall || m.Flags != 0 || m.Serial() != 7 {
				t.Errorf("message %v (type %d, flags %d, serial %d), want a plain method call, serial 7", m.Headers, m.Type, m.Flags, m.Serial())
			}
			if len(m.Body) != 2 || m.Body[0] != tt.op || !reflect.DeepEqual(m.Body[1], tt.domains) {
				t.Errorf("body %#v, want %q and %v", m.Body, tt.op, tt.domains)
			}
		})
	}

	hello, err := appendCall(nil, 1, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dbus.DecodeMessage(bytes.NewReader(hello))
	if err != nil || m.Headers[dbus.FieldMember].Value() != "Hello" || len(m.Body) != 0 || m.Headers[dbus.FieldSignature].Value() != nil {
		t.Errorf("Hello decodes as %v, %v: want a call of Hello without body or signature", m, err)
	}
}

// What the bus could not take is refused before anything is written: the
// bus would drop the whole connection for it.
func TestCallRefusesWhatIsNoDBusString(t *testing.T) {
	for _, bad := range []string{"a\x00b.test", "\xff.test"} {
		_, err := appendCall(nil, 2, Name, Path, Interface, "Notify", "sa{sa{ss}}", domainsBody("deploy", map[string]map[string]string{bad: {"certificate": "/c"}}))
		if err == nil || !strings.Contains(err.Error(), "encode Notify") {
			t.Errorf("domain %q: %v, want an encoding error", bad, err)
		}
		_, err = appendCall(nil, 2, Name, Path, Interface, "Notify", "sa{sa{ss}}", domainsBody("deploy", map[string]map[string]string{"a.test": {"certificate": bad}}))
		if err == nil {
			t.Errorf("path %q: no error", bad)
		}
	}
}

// godbusMessage encodes what the bus may send a hook, in either byte
// order.
func godbusMessage(t *testing.T, order binary.ByteOrder, typ dbus.Type, serial uint32, fields map[dbus.HeaderField]dbus.Variant, body ...any) []byte {
	t.Helper()
	if len(body) > 0 {
		fields[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
	}
	m := &dbus.Message{Type: typ, Headers: fields, Body: body}
	var b bytes.Buffer
	if err := m.EncodeTo(&b, order); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	order.PutUint32(out[8:12], serial)
	return out
}

func TestParseHeaderReadsGodbusMessages(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		ret := godbusMessage(t, order, dbus.TypeMethodReply, 9, map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
			dbus.FieldDestination: dbus.MakeVariant(":1.7"),
			dbus.FieldSender:      dbus.MakeVariant(":1.1"),
		}, "20261124T013608Z-5808-f2b732")
		errMsg := godbusMessage(t, order, dbus.TypeError, 10, map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
			dbus.FieldErrorName:   dbus.MakeVariant("org.certbus.Dispatcher1.Error.InvalidArgument"),
		}, "domain a.test: not covered", int32(3))
		signal := godbusMessage(t, order, dbus.TypeSignal, 11, map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:      dbus.MakeVariant(dbus.ObjectPath("/org/freedesktop/DBus")),
			dbus.FieldInterface: dbus.MakeVariant("org.freedesktop.DBus"),
			dbus.FieldMember:    dbus.MakeVariant("NameAcquired"),
			dbus.FieldUnixFDs:   dbus.MakeVariant(uint32(0)),
		}, ":1.7")
		other := godbusMessage(t, order, dbus.TypeMethodReply, 12, map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
		}, uint32(5))

		parse := func(what string, m []byte) *header {
			t.Helper()
			h, err := parseHeader(m)
			if err != nil {
				t.Fatalf("%v: %s: %v", order, what, err)
			}
			return h
		}
		h := parse("method return", ret)
		id, ok := h.firstString()
		if h.typ != typeMethodReturn || h.replySerial != 2 || h.signature != "s" || !ok || id != "20261124T013608Z-5808-f2b732" {
			t.Errorf("%v: method return: %+v, id %q %v", order, h, id, ok)
		}
		h = parse("error", errMsg)
		msg, ok := h.firstString()
		if h.typ != typeError || h.errorName != "org.certbus.Dispatcher1.Error.InvalidArgument" || !ok || msg != "domain a.test: not covered" {
			t.Errorf("%v: error: %+v, message %q %v", order, h, msg, ok)
		}
		h = parse("signal", signal)
		if h.replySerial != 0 || h.typ != 4 {
			t.Errorf("%v: signal: %+v", order, h)
		}
		h = parse("a return of u", other)
		if _, ok := h.firstString(); h.signature != "u" || ok {
			t.Errorf("%v: a return of u: %+v, first string %v", order, h, ok)
		}
	}
}

// Every cut of a message is an error or a header, never a panic or a read
// past the end. `go test` runs the cuts of the seeds; `go test -fuzz
// FuzzParseHeader` also changes their bytes.
func FuzzParseHeader(f *testing.F) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		m := &dbus.Message{Type: dbus.TypeError, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
			dbus.FieldErrorName:   dbus.MakeVariant("a.b"),
			dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf("")),
		}, Body: []any{"message"}}
		var b bytes.Buffer
		if err := m.EncodeTo(&b, order); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range b {
			cut := b[:i]
			if n, err := messageLen(cut); err == nil && n <= len(cut) {
				h, err := parseHeader(cut[:n])
				if err == nil {
					h.firstString()
				}
			}
		}
		if n, err := messageLen(b); err == nil && n <= len(b) {
			if h, err := parseHeader(b[:n]); err == nil {
				h.firstString()
			}
		}
	})
}

func TestParseHeaderRefusesMalformed(t *testing.T) {
	good := godbusMessage(t, binary.LittleEndian, dbus.TypeMethodReply, 3, map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
	}, "id")
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		m    []byte
	}{
		{"short", good[:15]},
		{"byte order", mutate(func(b []byte) []byte { b[0] = 'x'; return b })},
		{"version", mutate(func(b []byte) []byte { b[3] = 2; return b })},
		{"fields longer than the message says", mutate(func(b []byte) []byte { b[12] = 200; return b })},
		{"huge body", mutate(func(b []byte) []byte { b[7] = 0x7f; return b })},
		{"field of a container type", mutate(func(b []byte) []byte {
			// the reply serial's signature "u" becomes "a"
			i := bytes.Index(b, []byte{fieldReplySerial, 1, 'u', 0})
			b[i+2] = 'a'
			return b
		})},
	}
	// Lengths that agree with each other, and a field's string that runs
	// past the end of the header's fields.
	errMsg := godbusMessage(t, binary.LittleEndian, dbus.TypeError, 4, map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(2)),
		dbus.FieldErrorName:   dbus.MakeVariant("a.b"),
	}, "message")
	if _, err := parseHeader(errMsg); err != nil {
		t.Fatalf("the unmutated error: %v", err)
	}
	// The first length runs to a NUL byte in the body, so that only the
	// bound of the header's fields catches it.
	i := bytes.Index(errMsg, []byte{fieldErrorName, 1, 's', 0})
	fieldsEnd := 16 + int(binary.LittleEndian.Uint32(errMsg[12:]))
	toNUL := bytes.IndexByte(errMsg[fieldsEnd:], 0)
	if i < 0 || toNUL < 0 {
		t.Fatalf("no error name field or no NUL after the fields in % x", errMsg)
	}
	for _, n := range []uint32{uint32(fieldsEnd + toNUL - (i + 8)), 1 << 20} {
		b := append([]byte(nil), errMsg...)
		binary.LittleEndian.PutUint32(b[i+4:], n)
		if l, err := messageLen(b); err != nil || l != len(b) {
			t.Fatalf("the mutated error's length: %d, %v; want %d (only the field is wrong)", l, err, len(b))
		}
		tests = append(tests, struct {
			name string
			m    []byte
		}{fmt.Sprintf("a field's string of %d bytes, past the fields", n), b})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := parseHeader(tt.m); !errors.Is(err, errMalformed) {
				t.Errorf("parseHeader = %+v, %v; want errMalformed", h, err)
			}
		})
	}
	if _, err := parseHeader(good); err != nil {
		t.Fatalf("the unmutated message: %v", err)
	}

	// A string whose length runs to the end of the body, leaving no room
	// for its NUL, or past it.
	h, err := parseHeader(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint32{uint32(len(h.body) - 4), uint32(len(h.body)), 1 << 31} {
		body := append([]byte(nil), h.body...)
		binary.LittleEndian.PutUint32(body, n)
		bad := *h
		bad.body = body
		if s, ok := bad.firstString(); ok {
			t.Errorf("a string of length %d in a body of %d: read %q", n, len(body), s)
		}
	}
	unterminated := *h
	unterminated.body = append([]byte(nil), h.body...)
	unterminated.body[4+len("id")] = 'x'
	if s, ok := unterminated.firstString(); ok {
		t.Errorf("a string without its NUL: read %q", s)
	}
	if s, ok := h.firstString(); !ok || s != "id" {
		t.Errorf("the unmutated body: %q, %v", s, ok)
	}
}
