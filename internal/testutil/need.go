package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// aptPackages maps a tool to the Debian package that provides it, for the
// message Need prints. Tools not listed here can name their package with the
// "tool=package" form of Need's arguments.
var aptPackages = map[string]string{
	"apache2":        "apache2",
	"apache2ctl":     "apache2",
	"busctl":         "systemd",
	"certbot":        "certbot",
	"curl":           "curl",
	"dbus-daemon":    "dbus-daemon",
	"dbus-send":      "dbus-bin",
	"debootstrap":    "debootstrap",
	"dovecot":        "dovecot-core",
	"dpkg-deb":       "dpkg",
	"ejabberdctl":    "ejabberd",
	"gdbus":          "libglib2.0-bin",
	"groupadd":       "passwd",
	"groupdel":       "passwd",
	"haproxy":        "haproxy",
	"nginx":          "nginx",
	"openssl":        "openssl",
	"pebble":         "pebble",
	"postfix":        "postfix",
	"setpriv":        "util-linux",
	"synctl":         "matrix-synapse",
	"systemd-nspawn": "systemd-container",
	"turnserver":     "coturn",
	"unshare":        "util-linux",
	"useradd":        "passwd",
}

// sbinDirs are searched after PATH: tests often run with a user's PATH that
// lacks them, while the tools there (groupadd, apache2, haproxy) are still usable by root.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// Need makes sure every tool is installed: on PATH, or in /usr/local/sbin,
// /usr/sbin or /sbin. For the first one missing it skips the test, or fails
// it when the environment variable CI is set (so CI cannot pass by skipping);
// the message names the tool and the apt package that provides it. An
// argument of the form "tool=package" names the package for a tool Need does
// not know.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, arg := range tools {
		tool, pkg, ok := strings.Cut(arg, "=")
		if !ok {
			pkg = aptPackages[tool]
		}
		if _, err := LookPath(tool); err == nil {
			continue
		}
		msg := fmt.Sprintf("%s not found on PATH or in %s", tool, strings.Join(sbinDirs, ", "))
		if pkg != "" {
			msg += fmt.Sprintf(": install it with `apt-get install %s`", pkg)
		} else {
			msg += fmt.Sprintf(": install the package that provides it (`apt-file search bin/%s`)", tool)
		}
		missing(t, msg)
	}
}

// NeedRoot skips the test unless it runs as root, or fails it when CI is
// set, as Need does for tools.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, fmt.Sprintf("this test must run as root (euid is %d): run it with sudo, or in CI as root", os.Geteuid()))
	}
}

// Missing reports a missing prerequisite (a tool, a service user, root):
// a failure when CI is set, because CI must never pass by skipping, and a
// skip with the message otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	missing(t, fmt.Sprintf(format, args...))
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping", msg)
}

// LookPath is exec.LookPath that also searches /usr/local/sbin, /usr/sbin and
// /sbin, the places Need accepts. It returns an absolute path.
func LookPath(tool string) (string, error) {
	p, err := exec.LookPath(tool)
	if err == nil {
		return filepath.Abs(p)
	}
	if strings.Contains(tool, "/") {
		return "", err
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", tool, exec.ErrNotFound)
}
