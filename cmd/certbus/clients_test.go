package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/internal/testutil"
)

// legoVersion is the lego the tests build from the module proxy when no
// lego is installed: the version go.mod already requires.
const legoVersion = "v4.21.0"

var (
	legoOnce sync.Once
	legoPath string
	legoErr  error
)

// legoBinary finds the real lego command: $CERTBUS_LEGO, else `lego` on
// PATH (Debian's package), else github.com/go-acme/lego/v4/cmd/lego at
// legoVersion built once into a cache directory that later runs reuse (the
// first build fetches lego's modules through the module proxy and takes
// minutes). When none can be had the test skips, or fails under CI.
func legoBinary(t *testing.T) string {
	t.Helper()
	legoOnce.Do(func() {
		if p := os.Getenv("CERTBUS_LEGO"); p != "" {
			legoPath = p
			return
		}
		if p, err := exec.LookPath("lego"); err == nil {
			legoPath = p
			return
		}
		legoPath, legoErr = buildLego()
	})
	if legoErr != nil {
		msg := fmt.Sprintf("no lego: set CERTBUS_LEGO, install Debian's lego, or let the test build it: %v", legoErr)
		testutil.Missing(t, "%s", msg)
	}
	return legoPath
}

// buildLego builds lego's command in a throw-away module (lego's own
// dependencies are not certbus's, and its version list is refused by the
// proxy, so `go install ...@version` does not work).
func buildLego() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "certbus-test", "lego-"+legoVersion)
	bin := filepath.Join(dir, "lego")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	mod := fmt.Sprintf("module legobuild\n\ngo 1.24\n\nrequire github.com/go-acme/lego/v4 %s\n", legoVersion)
	tools := "//go:build tools\n\npackage tools\n\nimport _ \"github.com/go-acme/lego/v4/cmd/lego\"\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin+".tmp", "github.com/go-acme/lego/v4/cmd/lego")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build lego %s: %v\n%s", legoVersion, err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// clientApp installs every domain's copy under $DEST and counts reloads.
const clientApp = `apps:
  - name: web
    type: service
    domains: ["*"]
    copy: {certificate: "$DEST/{domain}/fullchain.pem", private_key: "$DEST/{domain}/privkey.pem"}
    reload: {command: ["$RELOAD"]}
`

// clientEnv is the environment a client's hook needs to find the test's
// daemon and config.
func (e *env) clientEnv() []string {
	return append(os.Environ(), "CERTBUS_BUS="+e.bus.Address, "CERTBUS_CONFIG="+e.config)
}

func (e *env) installed(t *testing.T, domain string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dest, domain, "fullchain.pem"))
	if err != nil {
		t.Fatalf("%s not installed: %v", domain, err)
	}
	return b
}

// TestLegoRunAndRenewHook: the real lego obtains a certificate for two
// names from pebble and runs `certbus hook lego` as its --run-hook, then
// renews it with --renew-hook; each time both names are installed and the
// app reloads once (lego has no pre/post: the debounce coalesces).
func TestLegoRunAndRenewHook(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: real lego and pebble")
	}
	lego := legoBinary(t)
	e := newEnv(t, false, "source_dirs: [$LEGO]\n"+clientApp)
	store := filepath.Join(e.dir, "lego")
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.ReplaceAll(b, []byte("$LEGO"), []byte(store)), 0o644)
	p := testutil.StartPebble(t)
	startDaemon(t, e.bus.Address, e.config)

	hook := buildBinary(t) + " hook lego --wait --timeout 30s"
	run := func(args ...string) string {
		t.Helper()
		base := []string{"--accept-tos", "--server", p.DirectoryURL, "--email", "admin@a.test",
			"--domains", "a.test", "--domains", "www.a.test", "--key-type", "ec256",
			"--http", "--http.port", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "--path", store}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, lego, append(base, args...)...)
		cmd.Env = append(e.clientEnv(), "LEGO_CA_CERTIFICATES="+p.CABundle)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lego %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("run", "--run-hook", hook)
	if !strings.Contains(out, "deploy event") || !strings.Contains(out, "web: pending") {
		t.Errorf("lego did not show the hook's delivery:\n%s", out)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the debounced reload")
	crt, _ := os.ReadFile(filepath.Join(store, "certificates", "a.test.crt"))
	for _, d := range []string{"a.test", "www.a.test"} {
		if got := e.installed(t, d); !bytes.Equal(got, crt) {
			t.Errorf("%s: installed chain differs from lego's bundle", d)
		}
	}
	// pebble's certificates last five years: --days beyond that forces it.
	// lego >= 4.11 sleeps up to 8 minutes before a renewal off a terminal
	// unless told not to; older ones (Debian's 4.9) know no such flag.
	renew := []string{"renew", "--days", "3000", "--renew-hook", hook}
	if help, _ := exec.Command(lego, "renew", "--help").CombinedOutput(); bytes.Contains(help, []byte("--no-random-sleep")) {
		renew = append(renew, "--no-random-sleep")
	}
	run(renew...)
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 2 }, "the reload after renew")
	renewed, _ := os.ReadFile(filepath.Join(store, "certificates", "a.test.crt"))
	if bytes.Equal(renewed, crt) {
		t.Fatal("lego did not renew")
	}
	if got := e.installed(t, "www.a.test"); !bytes.Equal(got, renewed) {
		t.Error("the renewed certificate was not installed")
	}
	time.Sleep(400 * time.Millisecond)
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads for two lego runs, want 2", n)
	}
	rep, code := statusJSON(t, e.config)
	if r := rep.row(t, "web", "www.a.test"); code != 0 || r.Copy != copyUpToDate || r.Source != filepath.Join(store, "certificates", "a.test.crt") {
		t.Errorf("status: exit %d, www.a.test %+v", code, r)
	}
}

// TestLegoStoreOutsideSourceDirsIsRefused: without source_dirs the daemon
// refuses lego's files (exit 3) and lego, whose hook failed, exits non-zero.
// The hook is run with lego's environment by hand here, as lego would.
func TestClientStoreOutsideSourceDirsIsRefused(t *testing.T) {
	e := newEnv(t, false, clientApp)
	startDaemon(t, e.bus.Address, e.config)
	l := testcerts.MustIssue(t, []string{"a.test"}, testcerts.Options{})
	store := filepath.Join(e.dir, "lego", "certificates")
	os.MkdirAll(store, 0o700)
	os.WriteFile(filepath.Join(store, "a.test.crt"), l.FullchainPEM(), 0o600)
	os.WriteFile(filepath.Join(store, "a.test.key"), l.KeyPEM, 0o600)
	out, code := hookRun(t, e, []string{"lego"}, "LEGO_CERT_DOMAIN=a.test",
		"LEGO_CERT_PATH="+filepath.Join(store, "a.test.crt"), "LEGO_CERT_KEY_PATH="+filepath.Join(store, "a.test.key"))
	if code != 3 || !strings.Contains(out, "outside the allowed directories") || !strings.Contains(out, "source_dirs") {
		t.Fatalf("lego store outside source_dirs: exit %d, want 3 naming source_dirs\n%s", code, out)
	}
}

// TestAcmeShReloadcmd drives `certbus hook acme.sh` the way acme.sh's
// _installcert runs --reloadcmd: through eval in a subshell whose working
// directory is the domain's directory, with CERT_PATH, CERT_KEY_PATH,
// CA_CERT_PATH, CERT_FULLCHAIN_PATH and Le_Domain exported, over files laid
// out as acme.sh keeps them. acme.sh is not packaged for Debian, so it
// cannot run here itself.
func TestAcmeShReloadcmd(t *testing.T) {
	e := newEnv(t, false, "source_dirs: [$HOME/.acme.sh]\n"+clientApp)
	home := filepath.Join(e.dir, "root")
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.ReplaceAll(b, []byte("$HOME"), []byte(home)), 0o644)
	startDaemon(t, e.bus.Address, e.config)
	reloadcmd := buildBinary(t) + " hook acme.sh --wait --timeout 30s"
	// Two certificates installed in a row, as `acme.sh --cron` does: one
	// debounced reload.
	for _, names := range [][]string{{"a.test", "www.a.test"}, {"b.test"}} {
		l := testcerts.MustIssue(t, names, testcerts.Options{})
		domainPath := filepath.Join(home, ".acme.sh", names[0]+"_ecc")
		os.MkdirAll(domainPath, 0o700)
		files := map[string][]byte{names[0] + ".cer": l.CertPEM, names[0] + ".key": l.KeyPEM, "ca.cer": l.ChainPEM, "fullchain.cer": l.FullchainPEM()}
		for n, data := range files {
			os.WriteFile(filepath.Join(domainPath, n), data, 0o600)
		}
		cmd := exec.Command("sh", "-c", `(
  export CERT_PATH CERT_KEY_PATH CA_CERT_PATH CERT_FULLCHAIN_PATH
  export Le_Domain="$MAIN"
  cd "$DOMAIN_PATH" && eval "$RELOADCMD"
)`)
		cmd.Env = append(e.clientEnv(), "MAIN="+names[0], "DOMAIN_PATH="+domainPath, "RELOADCMD="+reloadcmd,
			"CERT_PATH="+filepath.Join(domainPath, names[0]+".cer"), "CERT_KEY_PATH="+filepath.Join(domainPath, names[0]+".key"),
			"CA_CERT_PATH="+filepath.Join(domainPath, "ca.cer"), "CERT_FULLCHAIN_PATH="+filepath.Join(domainPath, "fullchain.cer"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "web: pending") {
			t.Fatalf("reloadcmd for %s: %v\n%s", names[0], err, out)
		}
		for _, d := range names {
			if got := e.installed(t, d); !bytes.Equal(got, l.FullchainPEM()) {
				t.Errorf("%s: installed chain is not acme.sh's fullchain.cer", d)
			}
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the debounced reload")
	time.Sleep(400 * time.Millisecond)
	if n := e.reloadCount(); n != 1 {
		t.Errorf("%d reloads for two certificates in a row, want 1", n)
	}

	// status finds acme.sh's files through the journal (they are not
	// certbot lineages), and re-reads them: acme.sh renews in place.
	domainPath := filepath.Join(home, ".acme.sh", "a.test_ecc")
	rep, code := statusJSON(t, e.config)
	if r := rep.row(t, "web", "www.a.test"); code != 0 || r.Copy != copyUpToDate || r.Source != filepath.Join(domainPath, "a.test.cer") {
		t.Fatalf("status after the reloadcmds: exit %d, www.a.test %+v", code, r)
	}
	// A renewal whose --reloadcmd never reached certbus.
	l := testcerts.MustIssue(t, []string{"a.test", "www.a.test"}, testcerts.Options{})
	for n, data := range map[string][]byte{"a.test.cer": l.CertPEM, "a.test.key": l.KeyPEM, "ca.cer": l.ChainPEM, "fullchain.cer": l.FullchainPEM()} {
		os.WriteFile(filepath.Join(domainPath, n), data, 0o600)
	}
	rep, code = statusJSON(t, e.config)
	if r := rep.row(t, "web", "a.test"); code != 1 || r.Copy != copyOutdated || r.Fingerprint != l.Fingerprint {
		t.Fatalf("status after a renewal certbus missed: exit %d, a.test %+v", code, r)
	}
	if out, errs, code := status(t, e.config, "--bus", e.bus.Address, "--fix"); code != 0 {
		t.Fatalf("status --fix: exit %d\n%s\n%s", code, out, errs)
	}
	for _, d := range []string{"a.test", "www.a.test"} {
		if got := e.installed(t, d); !bytes.Equal(got, l.FullchainPEM()) {
			t.Errorf("%s: --fix did not install acme.sh's renewed certificate", d)
		}
	}
}

// TestDehydratedHook: Debian's real dehydrated obtains one certificate for
// two names from pebble with `certbus hook dehydrated "$@"` as its hook
// script; startup_hook, deploy_cert and exit_hook become pre, deploy and
// post, so the app reloads exactly once per dehydrated run, and the other
// handlers (including dehydrated's own check for unknown ones) pass.
func TestDehydratedHook(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: real dehydrated and pebble")
	}
	testutil.Need(t, "dehydrated=dehydrated", "curl", "openssl")
	e := newEnv(t, false, "source_dirs: [$BASE]\n"+clientApp)
	base := filepath.Join(e.dir, "dehydrated")
	b, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.ReplaceAll(b, []byte("$BASE"), []byte(base)), 0o644)
	p := testutil.StartPebble(t)
	startDaemon(t, e.bus.Address, e.config)

	hook := filepath.Join(e.dir, "hook.sh")
	calls := filepath.Join(e.dir, "hook-calls")
	os.WriteFile(hook, []byte(fmt.Sprintf("#!/bin/sh\necho \"$1\" >> %s\nexec %s hook dehydrated \"$@\"\n", calls, buildBinary(t))), 0o755)
	conf := filepath.Join(e.dir, "dehydrated.conf")
	wellknown := filepath.Join(e.dir, "wellknown")
	os.MkdirAll(wellknown, 0o755)
	os.MkdirAll(base, 0o700)
	os.WriteFile(conf, []byte(fmt.Sprintf(`CA=%q
BASEDIR=%q
WELLKNOWN=%q
HOOK=%q
CHALLENGETYPE="http-01"
CURL_OPTS="--cacert %s"
CONTACT_EMAIL="admin@a.test"
KEYSIZE=2048
`, p.DirectoryURL, base, wellknown, hook, p.CABundle)), 0o644)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "dehydrated", append([]string{"--config", conf}, args...)...)
		cmd.Env = e.clientEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dehydrated %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("--register", "--accept-terms")
	out := run("--cron", "--domain", "a.test www.a.test")
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 1 }, "the reload at exit_hook")
	cert, _ := os.ReadFile(filepath.Join(base, "certs", "a.test", "fullchain.pem"))
	for _, d := range []string{"a.test", "www.a.test"} {
		if got := e.installed(t, d); !bytes.Equal(got, cert) {
			t.Errorf("%s: installed chain is not dehydrated's fullchain.pem\n%s", d, out)
		}
	}
	run("--cron", "--force", "--domain", "a.test www.a.test")
	testutil.WaitFor(t, 10*time.Second, func() bool { return e.reloadCount() == 2 }, "the reload of the forced renewal")
	time.Sleep(400 * time.Millisecond)
	if n := e.reloadCount(); n != 2 {
		t.Errorf("%d reloads for two dehydrated runs, want 2", n)
	}
	got, _ := os.ReadFile(calls)
	for _, h := range []string{"startup_hook", "deploy_challenge", "deploy_cert", "exit_hook", "this_hookscript_is_broken"} {
		if !strings.Contains(string(got), h) {
			t.Errorf("dehydrated never called %s; calls:\n%s", h, got)
		}
	}
}
