package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/certbus/certbus/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
)

// sandbox is the root of everything one bench run creates: a directory
// below /var/lib (root-owned, not world-writable, so certbus installs
// copies there; disk-backed, so the journal's fsync costs what it costs on
// a real host) and the processes started in it, each stopped by its PID.
type sandbox struct {
	root string
	bin  string // certbus binary
	repo string // module root, for the shipped bus policy
	keep bool
	// daemonEnv is added to every certbus serve's environment.
	daemonEnv []string
	mu        sync.Mutex
	procs     []*proc
	nextID    int
}

func newSandbox(bin, repo string, keep bool) (*sandbox, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the benchmarks need root: the daemon owns its name on a system-like bus, installs files with owners, and starts apache2")
	}
	root, err := os.MkdirTemp("/var/lib", "certbus-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	return &sandbox{root: root, bin: bin, repo: repo, keep: keep}, nil
}

// dir makes a fresh directory for one section.
func (s *sandbox) dir(name string) (string, error) {
	s.mu.Lock()
	s.nextID++
	d := filepath.Join(s.root, fmt.Sprintf("%02d-%s", s.nextID, name))
	s.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	return d, nil
}

// close stops every process still running (newest first) and removes the
// tree unless -keep.
func (s *sandbox) close() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	if s.keep {
		logf("kept %s", s.root)
		return
	}
	_ = os.RemoveAll(s.root)
}

// proc is a long-running program the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	once sync.Once
}

// start runs cmd with its output (where unset) appended to logPath. The
// child gets SIGKILL if the bench dies first.
func (s *sandbox) start(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) {
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// startBus starts a private dbus-daemon in dir and returns its address.
func (s *sandbox) startBus(dir string) (string, error) {
	socket := filepath.Join(dir, "bus.socket")
	conf := filepath.Join(dir, "bus.conf")
	policy := filepath.Join(s.repo, "packaging/dbus/org.certbus.Dispatcher1.conf")
	if _, err := os.Stat(policy); err != nil {
		return "", fmt.Errorf("shipped bus policy: %w", err)
	}
	// The same system-like bus the integration tests run on.
	if err := os.WriteFile(conf, []byte(testutil.BusConfig(socket, testutil.BusOptions{Policy: policy})), 0o644); err != nil {
		return "", err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nosyslog", "--print-address=1")
	cmd.Stdout = w
	p, err := s.start("dbus-daemon", cmd, filepath.Join(dir, "dbus-daemon.log"))
	w.Close()
	if err != nil {
		return "", err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case a := <-line:
		if a == "" {
			return "", fmt.Errorf("dbus-daemon printed no address (log %s)", p.log)
		}
		return a, nil
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("dbus-daemon printed no address in 10s")
	}
}

// daemonEnv is one certbus setup: a bus, a letsencrypt dir, a state dir,
// a config with its apps_dir, and the daemon once started.
type daemonEnv struct {
	s       *sandbox
	dir     string
	bus     string
	le      string
	state   string
	appsDir string
	config  string
	logPath string
	daemon  *proc
	// env is added to the daemon's environment (-daemon-env).
	env []string
	// bin is the certbus binary of this daemon; empty: the sandbox's.
	bin string
}

// newDaemonEnv prepares dirs, a bus and the main config (reload timings and
// apps given as YAML, appended to the main file).
func (s *sandbox) newDaemonEnv(name, reloadYAML, appsYAML string) (*daemonEnv, error) {
	dir, err := s.dir(name)
	if err != nil {
		return nil, err
	}
	e := &daemonEnv{
		s: s, dir: dir,
		le:      filepath.Join(dir, "letsencrypt"),
		state:   filepath.Join(dir, "state"),
		appsDir: filepath.Join(dir, "apps.d"),
		config:  filepath.Join(dir, "certbus.yaml"),
	}
	for _, d := range []string{e.le, e.appsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	body := fmt.Sprintf("letsencrypt_dir: %s\nstate_dir: %s\napps_dir: %s\n%s\n%s", e.le, e.state, e.appsDir, reloadYAML, appsYAML)
	if err := os.WriteFile(e.config, []byte(body), 0o644); err != nil {
		return nil, err
	}
	if e.bus, err = s.startBus(dir); err != nil {
		return nil, err
	}
	return e, nil
}

// startDaemon runs `certbus serve` and returns once it owns the name,
// with the time from exec to the NameOwnerChanged signal the bus sends
// when the name is acquired.
func (e *daemonEnv) startDaemon() (time.Duration, error) {
	watch, err := dbus.Connect(e.bus)
	if err != nil {
		return 0, err
	}
	defer watch.Close()
	if err := watch.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, "org.certbus.Dispatcher1")); err != nil {
		return 0, err
	}
	sigs := make(chan *dbus.Signal, 8)
	watch.Signal(sigs)
	e.logPath = filepath.Join(e.dir, fmt.Sprintf("certbus-%d.log", time.Now().UnixNano()))
	bin := e.s.bin
	if e.bin != "" {
		bin = e.bin
	}
	cmd := exec.Command(bin, "serve", "--bus", e.bus, "--config", e.config, "--log-level", "info")
	cmd.Env = append(append(os.Environ(), e.s.daemonEnv...), e.env...)
	t0 := time.Now()
	if e.daemon, err = e.s.start("certbus serve", cmd, e.logPath); err != nil {
		return 0, err
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case sig := <-sigs:
			if len(sig.Body) == 3 && sig.Body[2] != "" {
				return time.Since(t0), nil
			}
		case <-e.daemon.done:
			return 0, fmt.Errorf("certbus serve exited: %v; log:\n%s", e.daemon.err, tail(e.logPath, 2000))
		case <-deadline:
			return 0, fmt.Errorf("certbus serve did not own the name in 60s; log:\n%s", tail(e.logPath, 2000))
		}
	}
}

func (e *daemonEnv) stopDaemon() {
	if e.daemon != nil {
		e.daemon.stop(10 * time.Second)
	}
}

// hookCmd is `certbus hook <op>` with certbot's environment.
func (e *daemonEnv) hookCmd(op, lineage string, names []string, extra ...string) *exec.Cmd {
	cmd := exec.Command(e.s.bin, append([]string{"hook", op}, extra...)...)
	cmd.Env = append(baseEnv(), "CERTBUS_BUS="+e.bus, "CERTBUS_CONFIG="+e.config)
	if op == "deploy" {
		cmd.Env = append(cmd.Env, "RENEWED_LINEAGE="+lineage, "RENEWED_DOMAINS="+strings.Join(names, " "))
	}
	return cmd
}

// baseEnv is a small, fixed environment for every child (certbot runs its
// hooks with its own environment; a large inherited one would add noise).
func baseEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
}

// run runs cmd to the end and returns its wall time and output.
func run(cmd *exec.Cmd) (time.Duration, string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, out.String(), fmt.Errorf("%s: %v: %s", cmd.String(), err, out.String())
	}
	return d, out.String(), nil
}

// vmHWM reads a process's peak resident set size.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

// waitResults calls Wait for an event over a client connection.
func waitResults(ctx context.Context, conn *dbus.Conn, id string, timeout time.Duration) ([]result, error) {
	var res []result
	err := conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1").CallWithContext(ctx,
		"org.certbus.Dispatcher1.Wait", 0, id, uint32(timeout/time.Millisecond)).Store(&res)
	return res, err
}

type result struct{ App, Status, Message string }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
