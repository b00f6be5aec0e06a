package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/certbus/certbus/hooks"
)

// benchAccept times Notify -> reply from one godbus connection: deploy (the
// caller check, validation of the lineage's four files, the journal's
// fsync, the emit), interleaved with pre (everything but validation) and
// Peer.Ping (the bus round trip alone), to show where the time goes.
func benchAccept(s *sandbox, calls int) ([]row, error) {
	e, err := s.newDaemonEnv("accept", "reload: {debounce: 2s}", `apps:
  - name: web
    type: service
    domains: ["*"]
`)
	if err != nil {
		return nil, err
	}
	ls, err := writeLineages(e.le, 1)
	if err != nil {
		return nil, err
	}
	if _, err := e.startDaemon(); err != nil {
		return nil, err
	}
	defer e.stopDaemon()
	conn, err := dbus.Connect(e.bus)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	obj := conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1")
	domains := hooks.LineageDomains(ls[0].Live, ls[0].Names)
	notify := func(op string, d map[string]map[string]string) (time.Duration, error) {
		var id string
		t0 := time.Now()
		err := obj.Call("org.certbus.Dispatcher1.Notify", 0, op, d).Store(&id)
		return time.Since(t0), err
	}
	ping := func() (time.Duration, error) {
		t0 := time.Now()
		err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err
		return time.Since(t0), err
	}
	// The disk's own floor: an append of a journal-sized line and fsync, in
	// the state directory, alternating with the calls.
	ref, err := os.OpenFile(filepath.Join(e.state, "fsync-reference"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	line := []byte(strings.Repeat("x", 700) + "\n")
	fsync := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := ref.Write(line); err != nil {
			return 0, err
		}
		err := ref.Sync()
		return time.Since(t0), err
	}
	empty := map[string]map[string]string{}
	for range 20 {
		if _, err := notify("deploy", domains); err != nil {
			return nil, err
		}
	}
	// What the daemon's caller check costs per call: two bus-driver
	// round trips, made here for this connection's own name.
	me := conn.Names()[0]
	callerCheck := func() (time.Duration, error) {
		var uid uint32
		var creds map[string]dbus.Variant
		t0 := time.Now()
		if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, me).Store(&uid); err != nil {
			return 0, err
		}
		err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, me).Store(&creds)
		return time.Since(t0), err
	}
	var dep, pre, png, fs, cc []time.Duration
	for i := range calls {
		steps := []func() error{
			func() error { d, err := notify("deploy", domains); dep = append(dep, d); return err },
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
	return []row{
		{"2 accept", fmt.Sprintf("Notify(deploy) -> reply, p99 of %d calls, one connection, fsync included", calls), "", ms(p99), "", "p99 < 2 ms", verdict(p99 < 2*time.Millisecond)},
		{"2 accept", "  Notify(deploy) p50", "", ms(median(dep)), "", "", ""},
		{"2 accept", "  part: Notify(pre) p50 / p99 (caller check + journal fsync, no files)", "", ms(median(pre)) + " / " + ms(percentile(pre, 99)), "", "", ""},
		{"2 accept", "  part: Peer.Ping p50 / p99 (bus round trip only)", "", ms(median(png)) + " / " + ms(percentile(png, 99)), "", "", ""},
		{"2 accept", "  part: the caller check's two bus-driver calls (GetConnectionUnixUser + GetConnectionCredentials), p50 / p99", "", ms(median(cc)) + " / " + ms(percentile(cc, 99)), "", "", ""},
		{"2 accept", "  part: the disk alone, 700-byte append + fsync in the state dir, p50 / p99", "", ms(median(fs)) + " / " + ms(percentile(fs, 99)), "", "", ""},
	}, nil
}
