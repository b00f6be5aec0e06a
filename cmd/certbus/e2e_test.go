package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certbus/certbus/internal/testutil"
)

// TestCertbotRenewEndToEnd is the spine for real: Debian's certbot renews
// two lineages against a real pebble, the hooks written by install-hooks
// reach the daemon over a private system-like bus with the shipped policy,
// and the apps install and reload.
func TestCertbotRenewEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: real certbot and pebble")
	}
	testutil.Need(t, "certbot", "pebble")
	e := newEnv(t, false, "")
	p := testutil.StartPebble(t)
	cb := testutil.NewCertbot(t, p)
	cb.Certonly(t, "one", "one.test")
	cb.Certonly(t, "two", "two.test", "www.two.test")

	otherReloads := filepath.Join(e.dir, "other-reloads")
	otherScript := filepath.Join(e.dir, "other.sh")
	os.WriteFile(otherScript, []byte("#!/bin/sh\necho x >> "+otherReloads+"\n"), 0o755)
	cfg := strings.NewReplacer("$LE", cb.ConfigDir, "$STATE", e.state, "$DEST", e.dest, "$RELOAD", filepath.Join(e.dir, "reload.sh"), "$OTHER", otherScript, "$APPSD", filepath.Join(e.dir, "apps.d")).Replace(`letsencrypt_dir: $LE
state_dir: $STATE
apps_dir: $APPSD
apps:
  - name: web
    type: service
    domains: [one.test, two.test, www.two.test]
    copy:
      certificate: $DEST/web/{domain}/fullchain.pem
      private_key: $DEST/web/{domain}/privkey.pem
      owner: nobody
      group: nogroup
    reload: {command: ["$RELOAD"]}
  - name: other
    type: service
    domains: [other.test]
    copy: {certificate: "$DEST/other/{domain}.pem", private_key: "$DEST/other/{domain}.key"}
    reload: {command: ["$OTHER"]}
`)
	os.WriteFile(e.config, []byte(cfg), 0o644)
	out, err := runCLI(t, "install-hooks", "--letsencrypt-dir", cb.ConfigDir, "--binary", buildBinary(t))
	if err != nil {
		t.Fatalf("install-hooks: %v\n%s", err, out)
	}
	startDaemon(t, e.bus.Address, e.config)
	// First start: nothing was applied yet, so catch-up installs the current
	// lineages and reloads once.
	testutil.WaitFor(t, 15*time.Second, func() bool { return e.reloadCount() == 1 }, "the catch-up reload at first start")
	cb.Env = append(cb.Env, "CERTBUS_BUS="+e.bus.Address, "CERTBUS_CONFIG="+e.config)
	before := map[string][]byte{}
	for _, l := range []string{"one", "two"} {
		before[l], _ = os.ReadFile(filepath.Join(cb.Lineage(l), "cert.pem"))
	}
	cb.Renew(t)
	if errs := testutil.HookErrors(cb.LogText(t)); len(errs) > 0 {
		t.Fatalf("hook errors in certbot's log:\n%s", strings.Join(errs, "\n"))
	}
	testutil.WaitFor(t, 15*time.Second, func() bool { return e.reloadCount() >= 2 }, "the app's reload after post")
	time.Sleep(500 * time.Millisecond) // a second reload would show by now (debounce is 200ms)
	if n := e.reloadCount() - 1; n != 1 {
		t.Errorf("web reloaded %d times for one certbot run, want exactly 1", n)
	}
	for lineage, doms := range map[string][]string{"one": {"one.test"}, "two": {"two.test", "www.two.test"}} {
		live := cb.Lineage(lineage)
		cert, _ := os.ReadFile(filepath.Join(live, "cert.pem"))
		if bytes.Equal(cert, before[lineage]) {
			t.Fatalf("lineage %s was not renewed", lineage)
		}
		key, _ := os.ReadFile(filepath.Join(live, "privkey.pem"))
		full, _ := os.ReadFile(filepath.Join(live, "fullchain.pem"))
		for _, d := range doms {
			checkInstalled(t, filepath.Join(e.dest, "web", d, "privkey.pem"), key, 0o600)
			checkInstalled(t, filepath.Join(e.dest, "web", d, "fullchain.pem"), full, 0o644)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dest, "other")); !os.IsNotExist(err) {
		t.Errorf("the app for other domains was touched: %v", err)
	}
	if b, _ := os.ReadFile(otherReloads); len(b) != 0 {
		t.Errorf("the app for other domains was reloaded")
	}
	status, err := runCLI(t, "status", "--config", e.config)
	if err != nil || !strings.Contains(status, "web=ok") || !strings.Contains(status, "other=skipped") {
		t.Errorf("status: %v\n%s", err, status)
	}
}

func checkInstalled(t *testing.T, p string, want []byte, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("installed file: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not byte-identical to the lineage", p)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), mode)
	}
}

// runCLI runs the certbus binary and returns its combined output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := execCommand(buildBinary(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
