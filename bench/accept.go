package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/hooks"
)

// benchAccept times Notify -> reply from one godbus connection: deploy (the
// caller check, validation of the lineage's four files, the journal's
// sync, the emit), interleaved with pre (everything but validation) and
// Peer.Ping (the bus round trip alone), to show where the time goes. With
// against (a certbus binary of another build), a second daemon of that
// binary runs on a bus of its own with the same setup, and its deploys
// alternate with this one's: the two builds side by side.
func benchAccept(s *sandbox, calls int, against string) ([]row, error) {
	a, err := newAcceptTarget(s, "accept", "")
	if err != nil {
		return nil, err
	}
	defer a.close()
	var b *acceptTarget
	if against != "" {
		if b, err = newAcceptTarget(s, "accept-against", against); err != nil {
			return nil, err
		}
		defer b.close()
	}
	conn, notify := a.conn, a.notify
	domains := a.domains
	obj := conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1")
	e := a.e
	ping := func() (time.Duration, error) {
		t0 := time.Now()
		err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err
		return time.Since(t0), err
	}
	// The disk's own floor, written the way the journal writes: a
	// journal-sized line over padding in a file that keeps its size, and
	// fdatasync, in the state directory, alternating with the calls.
	ref, err := os.OpenFile(filepath.Join(e.state, "sync-reference"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	line := []byte(strings.Repeat("x", 700) + "\n")
	if _, err := ref.Write(bytes.Repeat([]byte{' '}, (calls+1)*len(line))); err != nil {
		return nil, err
	}
	if err := ref.Sync(); err != nil {
		return nil, err
	}
	var at int64
	fsync := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := ref.WriteAt(line, at); err != nil {
			return 0, err
		}
		at += int64(len(line))
		err := unix.Fdatasync(int(ref.Fd()))
		return time.Since(t0), err
	}
	empty := map[string]map[string]string{}
	targets := []*acceptTarget{a}
	if b != nil {
		targets = append(targets, b)
	}
	for _, t := range targets {
		for range 20 {
			if _, err := t.notify("deploy", t.domains); err != nil {
				return nil, err
			}
		}
	}
	// What the daemon's caller check costs for a sender it has not seen
	// (a hook's connection): one bus-driver round trip, made here for this
	// connection's own name. The daemon caches the answer per sender, so
	// its calls below do not pay it.
	me := conn.Names()[0]
	callerCheck := func() (time.Duration, error) {
		var creds map[string]dbus.Variant
		t0 := time.Now()
		err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, me).Store(&creds)
		return time.Since(t0), err
	}
	var dep, pre, png, fs, cc, depB []time.Duration
	for i := range calls {
		deploy := func() error { d, err := notify("deploy", domains); dep = append(dep, d); return err }
		if b != nil {
			// The two builds back to back, first one then the other.
			ours := deploy
			theirs := func() error { d, err := b.notify("deploy", b.domains); depB = append(depB, d); return err }
			deploy = func() error {
				first, second := ours, theirs
				if i%2 == 1 {
					first, second = theirs, ours
				}
				if err := first(); err != nil {
					return err
				}
				return second()
			}
		}
		steps := []func() error{
			deploy,
			func() error { d, err := notify("pre", empty); pre = append(pre, d); return err },
			func() error { d, err := ping(); png = append(png, d); return err },
			func() error { d, err := fsync(); fs = append(fs, d); return err },
			func() error { d, err := callerCheck(); cc = append(cc, d); return err },
		}
		for k := range steps {
			if err := steps[(i+k)%len(steps)](); err != nil {
				return nil, err
			}
		}
	}
	p99 := percentile(dep, 99)
	logf("accept: deploy p50/p90/p99/max %s/%s/%s/%s; pre p50/p99 %s/%s; ping p50/p99 %s/%s",
		ms(median(dep)), ms(percentile(dep, 90)), ms(p99), ms(percentile(dep, 100)),
		ms(median(pre)), ms(percentile(pre, 99)), ms(median(png)), ms(percentile(png, 99)))
	rows := []row{
		{"2 accept", fmt.Sprintf("Notify(deploy) -> reply, p99 of %d calls, one connection, fsync included", calls), "", ms(p99), "", "p99 < 2 ms", verdict(p99 < 2*time.Millisecond)},
		{"2 accept", "  Notify(deploy) p50", "", ms(median(dep)), "", "", ""},
		{"2 accept", "  part: Notify(pre) p50 / p99 (the journal's sync, no files; the caller is known by then)", "", ms(median(pre)) + " / " + ms(percentile(pre, 99)), "", "", ""},
		{"2 accept", "  part: Peer.Ping p50 / p99 (bus round trip only)", "", ms(median(png)) + " / " + ms(percentile(png, 99)), "", "", ""},
		{"2 accept", "  part: the caller check of a new sender (GetConnectionCredentials; a hook pays it, calls on a known connection do not), p50 / p99", "", ms(median(cc)) + " / " + ms(percentile(cc, 99)), "", "", ""},
		{"2 accept", "  part: the disk alone, a 700-byte line written as the journal writes (over padding, fdatasync), p50 / p99", "", ms(median(fs)) + " / " + ms(percentile(fs, 99)), "", "", ""},
	}
	if b != nil {
		logf("accept: against %s: deploy p50/p99 %s/%s", b.bin, ms(median(depB)), ms(percentile(depB, 99)))
		rows = append(rows,
			row{"2 accept", "  side by side, deploys alternating: Notify(deploy), median of the per-pair ratios, -against build (baseline) vs this one", ms(median(depB)), ms(median(dep)), ratioStr(pairedRatio(dep, depB)), "", ""},
			row{"2 accept", "  side by side: Notify(deploy) p99", ms(percentile(depB, 99)), ms(p99), ratioStr(float64(p99) / float64(percentile(depB, 99))), "", ""})
	}
	return rows, nil
}

// acceptTarget is one daemon set up for the accept section, with a
// connection to it and a lineage to deploy.
type acceptTarget struct {
	e       *daemonEnv
	bin     string
	conn    *dbus.Conn
	domains map[string]map[string]string
}

// newAcceptTarget starts a daemon (of bin; empty: the sandbox's) with one
// copying app and one lineage, and connects to it.
func newAcceptTarget(s *sandbox, name, bin string) (*acceptTarget, error) {
	e, err := s.newDaemonEnv(name, "reload: {debounce: 2s}", `apps:
  - name: web
    type: service
    domains: ["*"]
`)
	if err != nil {
		return nil, err
	}
	e.bin = bin
	// The sandbox stops the bus and removes the directory however this
	// ends; the daemon is stopped here when a later step fails.
	ls, err := writeLineages(e.le, 1)
	if err != nil {
		return nil, err
	}
	if _, err := e.startDaemon(); err != nil {
		return nil, err
	}
	conn, err := dbus.Connect(e.bus)
	if err != nil {
		e.stopDaemon()
		return nil, err
	}
	if bin == "" {
		bin = s.bin
	}
	return &acceptTarget{e: e, bin: bin, conn: conn, domains: hooks.LineageDomains(ls[0].Live, ls[0].Names)}, nil
}

func (t *acceptTarget) notify(op string, d map[string]map[string]string) (time.Duration, error) {
	var id string
	t0 := time.Now()
	err := t.conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1").Call("org.certbus.Dispatcher1.Notify", 0, op, d).Store(&id)
	return time.Since(t0), err
}

func (t *acceptTarget) close() {
	t.conn.Close()
	t.e.stopDaemon()
}
