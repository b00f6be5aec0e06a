package testutil

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// BusOptions configures StartBus.
type BusOptions struct {
	// Policy is the path of a bus policy file to <include>, normally the
	// shipped one: filepath.Join(RepoRoot(t), ShippedPolicy). Empty: none.
	Policy string
	// Permissive adds a mandatory policy after everything else that lets
	// every user own any name and send anything to anyone, so the bus
	// protects nothing and only the service's own caller check stands.
	Permissive bool
	// Extra is raw XML inserted inside <busconfig> after the policy file and
	// before the permissive rules, e.g. a <policy user="root"> that lets a
	// test own a name of its own.
	Extra string
}

// ShippedPolicy is the bus policy file packaging installs into
// /usr/share/dbus-1/system.d, relative to RepoRoot.
const ShippedPolicy = "packaging/dbus/org.certbus.Dispatcher1.conf"

// Bus is a private dbus-daemon configured like Debian's system bus: type
// system, EXTERNAL authentication only (callers are known by uid), a default
// policy that lets every user connect and talk to the bus driver but owns
// and sends (method calls) nothing, and the policy file given in BusOptions.
type Bus struct {
	// Address is the bus address, for godbus's dbus.Connect, dbus-send
	// --bus, gdbus --address, or certbus's --bus and CERTBUS_BUS.
	Address string
	// ConfigFile is the generated configuration the daemon runs with.
	ConfigFile string
	// LogFile receives the daemon's stderr, including its policy
	// rejections and warnings about the configuration.
	LogFile string

	proc *process
}

// busConfig is system.conf's default policy (Debian's dbus 1.14), with a
// private socket instead of /run/dbus and no <user>, <fork>, service helper,
// syslog or system.d includes.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
%s</busconfig>
`

// permissivePolicy comes last and is mandatory: mandatory rules are applied
// after the default, group and user ones, so they override the shipped
// policy's denials for everyone.
const permissivePolicy = `  <policy context="mandatory">
    <allow own="*"/>
    <allow send_destination="*"/>
  </policy>
`

// unknownPrincipal matches what dbus-daemon prints while loading its
// configuration for a <policy group=...> or <policy user=...> naming a group
// or user the machine does not have.
var unknownPrincipal = regexp.MustCompile(`Unknown (group|username) "([^"]*)" in message bus configuration file`)

// BusConfig is the dbus-daemon configuration StartBus writes: a
// system-like bus listening on socket, with opts' policy file, extra XML and
// permissive rules. It needs no test: the benchmarks use it too.
func BusConfig(socket string, opts BusOptions) string {
	var body strings.Builder
	if opts.Policy != "" {
		fmt.Fprintf(&body, "  <include>%s</include>\n", xmlText(opts.Policy))
	}
	if opts.Extra != "" {
		body.WriteString(opts.Extra + "\n")
	}
	if opts.Permissive {
		body.WriteString(permissivePolicy)
	}
	return fmt.Sprintf(busConfig, xmlText(addressEscape(socket)), body.String())
}

// StartBus starts a private dbus-daemon for the test and stops it (by its
// PID) when the test ends. The socket lives in a t.TempDir() made reachable
// by every user, so callers run with AsUser can connect.
//
// dbus-daemon resolves the group and user names of <policy group="...">
// and <policy user="..."> when it reads its configuration. A name that does
// not exist then makes it print `Unknown group "certbus" in message bus
// configuration file` and drop that whole <policy> block: the daemon still
// starts, and the block grants nothing to anyone, even to members of a group
// of that name created afterwards, until the configuration is reloaded.
// Membership, on the other hand, is taken per connection from the kernel
// (SO_PEERGROUPS: the caller's gid and supplementary groups when it
// connected), so a caller started with AsUser(Nobody, Nobody, []int{gid},
// ...) counts as a member without being listed in /etc/group. A test of the
// shipped policy's group rule therefore calls EnsureGroup(t, "certbus")
// before StartBus (or Reload after creating the group). StartBus logs the
// names the daemon did not know.
func StartBus(t testing.TB, opts BusOptions) *Bus {
	t.Helper()
	Need(t, "dbus-daemon")
	dir := t.TempDir()
	// t.TempDir and its parent are 0700; other users must be able to reach
	// the socket (which dbus-daemon creates 0777).
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("start bus: %v", err)
		}
	}
	if opts.Policy != "" {
		if _, err := os.Stat(opts.Policy); err != nil {
			t.Fatalf("start bus: policy file: %v", err)
		}
	}
	b := &Bus{
		ConfigFile: filepath.Join(dir, "bus.conf"),
		LogFile:    filepath.Join(dir, "dbus-daemon.log"),
	}
	conf := BusConfig(filepath.Join(dir, "bus.socket"), opts)
	if err := os.WriteFile(b.ConfigFile, []byte(conf), 0o644); err != nil {
		t.Fatalf("start bus: %v", err)
	}

	// The daemon writes its address to stdout once it listens; a pipe of our
	// own (not cmd.StdoutPipe, which Wait would close under us) carries it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("start bus: %v", err)
	}
	t.Cleanup(func() { r.Close() }) // runs after the daemon has stopped
	cmd := exec.Command("dbus-daemon", "--config-file="+b.ConfigFile, "--nofork", "--nosyslog", "--print-address=1")
	cmd.Stdout = w
	b.proc = startProcess(t, "dbus-daemon", cmd, b.LogFile)
	w.Close()

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case b.Address = <-lines:
	case <-time.After(10 * time.Second):
	}
	if b.Address == "" {
		b.proc.stop(t)
		t.Fatalf("start bus: dbus-daemon printed no address; its log:\n%s", tail(b.LogFile, 4096))
	}
	if m := unknownPrincipal.FindAllStringSubmatch(tail(b.LogFile, 1<<20), -1); m != nil {
		for _, s := range m {
			t.Logf("dbus-daemon: no %s %q on this machine: its <policy> grants nothing (see StartBus)", s[1], s[2])
		}
	}
	return b
}

// addressEscape escapes a value for a D-Bus address: bytes other than
// [-0-9A-Za-z_/.\\*] become %XX. t.TempDir names may hold ',', '=' or spaces.
func addressEscape(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_/.\\*", c) >= 0 {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02x", c)
		}
	}
	return sb.String()
}

func xmlText(s string) string {
	var sb strings.Builder
	_ = xml.EscapeText(&sb, []byte(s))
	return sb.String()
}

// Connect opens a connection to the bus as the test process (root, in the
// tests that need it), already authenticated and past Hello, and closes it
// when the test ends.
func (b *Bus) Connect(t testing.TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to %s: %v", b.Address, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Reload makes the daemon read its configuration again (ReloadConfig, which
// returns once it is done), e.g. after EnsureGroup created a group its policy
// names.
func (b *Bus) Reload(t testing.TB) {
	t.Helper()
	conn := b.Connect(t)
	if err := conn.BusObject().Call("org.freedesktop.DBus.ReloadConfig", 0).Err; err != nil {
		t.Fatalf("reload bus config: %v", err)
	}
	conn.Close()
}

// Stop stops the daemon now, e.g. to test what happens when the bus is
// gone. Stopping it again, or at cleanup, does nothing.
func (b *Bus) Stop(t testing.TB) {
	t.Helper()
	b.proc.stop(t)
}

// Nobody is the uid and gid (nobody, nogroup) of the unprivileged caller
// tests run with AsUser.
const Nobody = 65534

// AsUser returns a command that runs name with arg under setpriv as real
// and effective uid and gid, with exactly the supplementary groups given
// (none if groups is empty). The test must run as root (NeedRoot) and have
// setpriv (Need(t, "setpriv")). The environment is inherited; set cmd.Env
// to change it.
func AsUser(uid, gid int, groups []int, name string, arg ...string) *exec.Cmd {
	args := []string{"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid)}
	if len(groups) == 0 {
		args = append(args, "--clear-groups")
	} else {
		gs := make([]string, len(groups))
		for i, g := range groups {
			gs[i] = strconv.Itoa(g)
		}
		args = append(args, "--groups="+strings.Join(gs, ","))
	}
	args = append(args, "--", name)
	return exec.Command("setpriv", append(args, arg...)...)
}

// EnsureGroup returns the gid of the group name, creating it first as a
// system group (groupadd --system) if the machine has none. A group it
// creates is left in place: other test processes running at the same time
// may rely on it (the shipped bus policy and the daemon's allowed_groups name
// "certbus"), and the package's postinst creates the same group anyway.
func EnsureGroup(t testing.TB, name string) int {
	t.Helper()
	if g, err := user.LookupGroup(name); err == nil {
		return atoi(t, g.Gid)
	}
	NeedRoot(t)
	Need(t, "groupadd")
	groupadd, _ := LookPath("groupadd")
	out, err := exec.Command(groupadd, "--system", name).CombinedOutput()
	var exit *exec.ExitError
	// Exit status 9: another process created it in the meantime.
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 9) {
		t.Fatalf("groupadd --system %s: %v\n%s", name, err, out)
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatalf("group %s after groupadd: %v", name, err)
	}
	t.Logf("created system group %s (gid %s)", name, g.Gid)
	return atoi(t, g.Gid)
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
