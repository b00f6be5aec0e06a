package appstatus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/systemd"
)

// daemonRef names a daemon an app reloads: a systemd unit, or a process
// found through a PID file (or a function, for a unit's main PID).
type daemonRef struct {
	unit    string
	pidFile string
	pid     func(context.Context) (int, error)
	label   string
}

func (r daemonRef) String() string {
	switch {
	case r.unit != "":
		return r.unit
	case r.pidFile != "":
		return "pid file " + r.pidFile
	}
	return r.label
}

// daemonRefs finds the daemons behind an app's reload methods, looking
// through methods that wrap others (a config test before a reload).
func daemonRefs(rs []apps.Reloader) []daemonRef {
	var out []daemonRef
	seen := map[string]bool{}
	var walk func(r apps.Reloader, depth int)
	walk = func(r apps.Reloader, depth int) {
		if r == nil || depth > 4 {
			return
		}
		var ref daemonRef
		switch m := r.(type) {
		case *apps.UnitReloader:
			ref = daemonRef{unit: m.Unit}
		case *apps.SignalReloader:
			ref = daemonRef{pidFile: m.PIDFile, pid: m.PID, label: m.Name()}
		}
		if k := ref.String(); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, ref)
		}
		for _, in := range wrapped(r) {
			walk(in, depth+1)
		}
	}
	for _, r := range rs {
		walk(r, 0)
	}
	return out
}

// wrapped returns the reloaders a reloader holds in its exported fields.
func wrapped(r apps.Reloader) []apps.Reloader {
	v := reflect.ValueOf(r)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []apps.Reloader
	add := func(f reflect.Value) {
		if !f.CanInterface() || (f.Kind() == reflect.Pointer || f.Kind() == reflect.Interface) && f.IsNil() {
			return
		}
		if in, ok := f.Interface().(apps.Reloader); ok {
			out = append(out, in)
		}
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Slice {
			for j := 0; j < f.Len(); j++ {
				add(f.Index(j))
			}
			continue
		}
		add(f)
	}
	return out
}

// daemonInfo is what is known of a daemon's process.
type daemonInfo struct {
	running bool
	start   time.Time
	err     error
}

// daemons looks daemons up once per status run; systemd is asked only if
// some app reloads a unit.
type daemons struct {
	ctx   context.Context
	cache map[string]daemonInfo
	sd    *systemd.Manager
	sdErr error
}

func (d *daemons) get(ref daemonRef) daemonInfo {
	k := ref.String()
	if info, ok := d.cache[k]; ok {
		return info
	}
	var info daemonInfo
	if ref.unit != "" {
		info = d.unit(ref.unit)
	} else {
		info = pidInfo(d.ctx, ref)
	}
	d.cache[k] = info
	return info
}

func (d *daemons) unit(unit string) daemonInfo {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	if d.sd == nil && d.sdErr == nil {
		d.sd, d.sdErr = systemd.Connect(ctx)
	}
	if d.sdErr != nil {
		return daemonInfo{err: d.sdErr}
	}
	pid, err := d.sd.MainPID(ctx, unit)
	if err != nil {
		return daemonInfo{err: err}
	}
	if pid == 0 {
		return daemonInfo{}
	}
	t, err := d.sd.ActiveEnterTimestamp(ctx, unit)
	if err != nil {
		return daemonInfo{err: err}
	}
	return daemonInfo{running: true, start: t}
}

func (d *daemons) close() {
	if d.sd != nil {
		d.sd.Close()
	}
}

// pidInfo finds the process of a PID file (or PID function) and when it
// started. A PID file naming no live process means the daemon is stopped.
func pidInfo(ctx context.Context, ref daemonRef) daemonInfo {
	var pid int
	var err error
	if ref.pidFile != "" {
		pid, err = apps.ReadPIDFile(ref.pidFile)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				return daemonInfo{}
			}
			return daemonInfo{err: err}
		}
	} else {
		if pid, err = ref.pid(ctx); err != nil {
			return daemonInfo{err: err}
		}
		if pid == 0 {
			return daemonInfo{}
		}
	}
	start, err := processStart(pid)
	if errors.Is(err, os.ErrNotExist) {
		return daemonInfo{}
	}
	if err != nil {
		return daemonInfo{err: err}
	}
	return daemonInfo{running: true, start: start}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// processStart returns when process pid started: its start time since boot
// (/proc/PID/stat field 22, which counts suspended time as CLOCK_BOOTTIME
// does) placed on the wall clock through CLOCK_BOOTTIME now. Unlike
// /proc/stat's btime, which has whole seconds, this is exact to a tick.
func processStart(pid int) (time.Time, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, err
	}
	// The command name (field 2) may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	now := time.Now()
	sinceStart := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/clockTicks
	return now.Add(-sinceStart), nil
}
