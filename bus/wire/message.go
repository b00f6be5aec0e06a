package wire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The D-Bus marshalling this package needs, and only that: a method call
// whose body is `s` or `sa{sa{ss}}`, written little endian; and the header
// and first string of whatever the bus sends back, in either byte order.
// godbus does all of it by reflection, and linking it costs a hook process
// a measurable part of its life (bench/RESULTS.md); the tests check these
// bytes against godbus both ways and against a real dbus-daemon.

// Message types and header fields of the D-Bus specification.
const (
	typeMethodCall   = 1
	typeMethodReturn = 2
	typeError        = 3

	fieldPath        = 1
	fieldInterface   = 2
	fieldMember      = 3
	fieldErrorName   = 4
	fieldReplySerial = 5
	fieldDestination = 6
	fieldSignature   = 8
)

// maxMessage caps what is read: the specification's limit is 128 MiB, but
// every answer a hook waits for is a few hundred bytes.
const maxMessage = 1 << 20

// encoder appends little-endian D-Bus values to b. Alignment is relative
// to the start of b, which must be the start of a message or of its body
// (both are 8-aligned).
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) align(n int) {
	for len(e.b)%n != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) byte(v byte) { e.b = append(e.b, v) }

func (e *encoder) uint32(v uint32) {
	e.align(4)
	e.b = append(e.b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func (e *encoder) putUint32(at int, v uint32) {
	e.b[at], e.b[at+1], e.b[at+2], e.b[at+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// string writes an `s` or `o`. The bus drops the connection of a client
// that sends a string that is not UTF-8 or holds a NUL, so such a string
// is an error here, before anything is sent.
func (e *encoder) string(s string) {
	if e.err == nil && (!utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
		e.err = fmt.Errorf("%q is not a D-Bus string (UTF-8 without NUL)", s)
	}
	e.uint32(uint32(len(s)))
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
}

// signature writes a `g`: the signatures here are constants, short and
// valid.
func (e *encoder) signature(s string) {
	e.byte(byte(len(s)))
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
}

// array writes an array whose elements align to elem, each written by
// each; its length excludes the padding before the first element.
func (e *encoder) array(elem int, each func()) {
	e.uint32(0)
	at := len(e.b) - 4
	e.align(elem)
	start := len(e.b)
	each()
	e.putUint32(at, uint32(len(e.b)-start))
}

// field writes one header field, a struct (yv) of a code and a variant.
func (e *encoder) field(code byte, sig, value string) {
	e.align(8)
	e.byte(code)
	e.signature(sig)
	if sig == "g" {
		e.signature(value)
	} else {
		e.string(value)
	}
}

// domainsBody is the body of Notify: `s` (the operation) and `a{sa{ss}}`
// (domain -> role -> path), keys in order so that the bytes are the same
// for the same event.
func domainsBody(op string, domains map[string]map[string]string) *encoder {
	e := &encoder{}
	e.string(op)
	e.array(8, func() {
		for _, d := range sortedKeys(domains) {
			e.align(8)
			e.string(d)
			files := domains[d]
			e.array(8, func() {
				for _, k := range sortedKeys(files) {
					e.align(8)
					e.string(k)
					e.string(files[k])
				}
			})
		}
	})
	return e
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendCall appends a method call with the given serial; body (nil for
// none) holds its arguments, of signature sig.
func appendCall(b []byte, serial uint32, dest, path, iface, member, sig string, body *encoder) ([]byte, error) {
	var bodyBytes []byte
	if body != nil {
		if body.err != nil {
			return b, fmt.Errorf("encode %s: %w", member, body.err)
		}
		bodyBytes = body.b
	}
	e := &encoder{b: make([]byte, 0, 160+len(bodyBytes))}
	e.byte('l')
	e.byte(typeMethodCall)
	e.byte(0) // flags
	e.byte(1) // protocol version
	e.uint32(uint32(len(bodyBytes)))
	e.uint32(serial)
	e.array(8, func() {
		e.field(fieldPath, "o", path)
		e.field(fieldInterface, "s", iface)
		e.field(fieldMember, "s", member)
		e.field(fieldDestination, "s", dest)
		if sig != "" {
			e.field(fieldSignature, "g", sig)
		}
	})
	e.align(8)
	if e.err != nil {
		return b, fmt.Errorf("encode %s: %w", member, e.err)
	}
	if len(e.b)+len(bodyBytes) > maxMessage {
		return b, fmt.Errorf("encode %s: %d bytes, over the %d a call may have here", member, len(e.b)+len(bodyBytes), maxMessage)
	}
	b = append(b, e.b...)
	return append(b, bodyBytes...), nil
}

// header is what a hook reads of a message the bus sends it.
type header struct {
	typ         byte
	replySerial uint32 // 0: none (signals)
	errorName   string
	signature   string
	body        []byte
	bigEndian   bool
}

var errMalformed = errors.New("malformed D-Bus message")

// messageLen returns the whole length of the message that starts b, from
// its first 16 bytes.
func messageLen(b []byte) (int, error) {
	if len(b) < 16 {
		return 0, errMalformed
	}
	big := b[0] == 'B'
	if !big && b[0] != 'l' {
		return 0, fmt.Errorf("%w: byte order %q", errMalformed, b[0])
	}
	fields := int64(u32(b[12:], big))
	body := int64(u32(b[4:], big))
	n := (16+fields+7)&^7 + body
	if n > maxMessage {
		return 0, fmt.Errorf("%w: %d bytes, over the %d expected here", errMalformed, n, maxMessage)
	}
	return int(n), nil
}

func u32(b []byte, big bool) uint32 {
	if big {
		return uint32(b[3]) | uint32(b[2])<<8 | uint32(b[1])<<16 | uint32(b[0])<<24
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// parseHeader reads the header fields of the whole message m (of the
// length messageLen gave). Fields of other types than the specification's
// basic ones are refused rather than skipped.
func parseHeader(m []byte) (*header, error) {
	n, err := messageLen(m)
	if err != nil {
		return nil, err
	}
	if n != len(m) || m[3] != 1 {
		return nil, errMalformed
	}
	h := &header{typ: m[1], bigEndian: m[0] == 'B'}
	end := 16 + int(u32(m[12:], h.bigEndian))
	d := decoder{b: m[:end], at: 16, big: h.bigEndian}
	for d.err == nil && d.align(8) < end {
		code := d.byte()
		sig := d.signature()
		switch {
		case sig == "u":
			v := d.uint32()
			if code == fieldReplySerial {
				h.replySerial = v
			}
		case sig == "s" || sig == "o":
			v := d.string()
			if code == fieldErrorName {
				h.errorName = v
			}
		case sig == "g":
			v := d.signature()
			if code == fieldSignature {
				h.signature = v
			}
		case len(sig) == 1 && fixedSize(sig[0]) > 0:
			d.skip(fixedSize(sig[0]))
		default:
			d.fail()
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	h.body = m[(end+7)&^7:]
	return h, nil
}

// fixedSize is the size (and alignment) of a fixed-size basic type.
func fixedSize(t byte) int {
	switch t {
	case 'y':
		return 1
	case 'n', 'q':
		return 2
	case 'b', 'i', 'u', 'h':
		return 4
	case 'x', 't', 'd':
		return 8
	}
	return 0
}

// firstString is the body's first value when the body's signature starts
// with a string: an error's message, Notify's event id.
func (h *header) firstString() (string, bool) {
	if !strings.HasPrefix(h.signature, "s") {
		return "", false
	}
	d := decoder{b: h.body, big: h.bigEndian}
	s := d.string()
	return s, d.err == nil
}

// decoder reads values from b at offset at; the first error sticks and
// every later read returns zero values.
type decoder struct {
	b   []byte
	at  int
	big bool
	err error
}

func (d *decoder) fail() { d.err = errMalformed }

func (d *decoder) align(n int) int {
	d.at = (d.at + n - 1) &^ (n - 1)
	return d.at
}

func (d *decoder) skip(n int) {
	d.align(n)
	if d.err == nil && d.at+n > len(d.b) {
		d.fail()
	}
	d.at += n
}

func (d *decoder) byte() byte {
	if d.err != nil || d.at >= len(d.b) {
		d.fail()
		return 0
	}
	d.at++
	return d.b[d.at-1]
}

func (d *decoder) uint32() uint32 {
	d.align(4)
	if d.err != nil || d.at+4 > len(d.b) {
		d.fail()
		return 0
	}
	d.at += 4
	return u32(d.b[d.at-4:], d.big)
}

// text reads n bytes and the NUL after them.
func (d *decoder) text(n int) string {
	if d.err != nil || n < 0 || n >= len(d.b)-d.at || d.b[d.at+n] != 0 {
		d.fail()
		return ""
	}
	s := string(d.b[d.at : d.at+n])
	d.at += n + 1
	return s
}

func (d *decoder) string() string { return d.text(int(d.uint32())) }

func (d *decoder) signature() string { return d.text(int(d.byte())) }
