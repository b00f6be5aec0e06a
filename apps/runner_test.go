package apps_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/apps"
	_ "github.com/certbus/certbus/apps/service"
	"github.com/certbus/certbus/hooks"
	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/install/installtest"
	"github.com/certbus/certbus/internal/testcerts"
	"github.com/certbus/certbus/signals"
)

// harness runs apps on a signal with events built from real lineages.
type harness struct {
	t       *testing.T
	le      string
	sig     *signals.Signal[*event.Event]
	checker *certs.Checker
	n       int
	leafs   map[string]*testcerts.Leaf
	last    time.Time // the last event emitted, for Event.Quiet as the daemon sets it
}

func newHarness(t *testing.T) *harness {
	le := t.TempDir()
	h := &harness{t: t, le: le, sig: signals.New[*event.Event](0), checker: &certs.Checker{Roots: certs.NewRoots(le)}, leafs: map[string]*testcerts.Leaf{}}
	t.Cleanup(func() { h.sig.Close(context.Background()) })
	return h
}

// renew writes a new version of a lineage and returns its live dir.
func (h *harness) renew(name string, names ...string) string {
	l := testcerts.MustIssue(h.t, names, testcerts.Options{})
	h.leafs[name] = l
	return testcerts.MustLineage(h.t, h.le, name, len(h.leafs)+h.n, l)
}

func (h *harness) emit(op event.Operation, live string, names ...string) string {
	h.t.Helper()
	var doms map[string]map[string]string
	if live != "" {
		doms = hooks.LineageDomains(live, names)
	}
	m, err := h.checker.Check(op, doms)
	if err != nil {
		h.t.Fatal(err)
	}
	h.n++
	id := fmt.Sprint("ev", h.n)
	now := time.Now()
	ev := &event.Event{ID: id, Operation: op, Time: now, Domains: m}
	if !h.last.IsZero() {
		ev.Quiet = now.Sub(h.last)
	}
	h.last = now
	if err := h.sig.Emit(id, ev); err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) wait(id string) map[string]signals.Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.sig.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("wait %s: %v", id, err)
	}
	out := map[string]signals.Result{}
	for _, r := range res {
		out[r.Subscriber] = r
	}
	return out
}

// counter is a reload command that appends a line per run.
func counter(t *testing.T, exit int) (argv []string, count func() int) {
	dir := t.TempDir()
	log := filepath.Join(dir, "reloads")
	script := filepath.Join(dir, "reload.sh")
	os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\necho \"$CERTBUS_OPERATION $CERTBUS_DOMAINS\" >> %s\nexit %d\n", log, exit)), 0o755)
	return []string{script}, func() int {
		b, _ := os.ReadFile(log)
		return strings.Count(string(b), "\n")
	}
}

func build(t *testing.T, a config.App, reload config.Reload) *apps.Spec {
	t.Helper()
	a.Pos = config.Pos{File: "test.yaml", Line: 1}
	if a.Type == "" {
		a.Type = "service"
	}
	s, err := apps.Build(&a, &apps.Env{Reload: reload, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fast = config.Reload{Debounce: config.Duration(100 * time.Millisecond), MaxDelay: config.Duration(time.Minute), Timeout: config.Duration(5 * time.Second)}

func TestCoalescedRunInstallsAndReloadsOnce(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	argv, reloads := counter(t, 0)
	otherArgv, otherReloads := counter(t, 0)
	web := build(t, config.App{Name: "web", Domains: []string{"a.test", "b.test", "www.a.test"},
		Copy:   &config.Copy{Certificate: dest + "/{domain}/fullchain.pem", PrivateKey: dest + "/{domain}/privkey.pem", Owner: "65534", Group: "65534"},
		Reload: &config.AppReload{Command: argv}}, fast)
	combined := build(t, config.App{Name: "mail", Domains: []string{"b.test"},
		Copy:   &config.Copy{Certificate: dest + "/mail.pem", PrivateKey: dest + "/mail.pem"},
		Reload: &config.AppReload{Command: otherArgv}}, fast)
	other := build(t, config.App{Name: "other", Domains: []string{"elsewhere.test"},
		Copy: &config.Copy{Certificate: dest + "/other/{domain}.pem", PrivateKey: dest + "/other/{domain}.key"}, Reload: &config.AppReload{Command: otherArgv}}, fast)
	if _, err := apps.NewRunner(h.sig, []*apps.Spec{web, combined, other}, apps.Options{Log: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	a := h.renew("a.test", "a.test", "www.a.test")
	b := h.renew("b.test", "b.test")
	pre := h.emit(event.Pre, "")
	d1 := h.emit(event.Deploy, a, "a.test", "www.a.test")
	d2 := h.emit(event.Deploy, b, "b.test")
	if r := h.wait(d1)["web"]; r.Status != signals.Pending {
		t.Errorf("deploy inside a run: %+v, want pending", r)
	}
	if r := h.wait(d1)["other"]; r.Status != signals.Skipped {
		t.Errorf("other app: %+v, want skipped", r)
	}
	h.wait(d2)
	if n := reloads(); n != 0 {
		t.Fatalf("reloaded %d times before post", n)
	}
	post := h.emit(event.Post, "")
	res := h.wait(post)
	if res["web"].Status != signals.OK || res["mail"].Status != signals.OK {
		t.Fatalf("post results: %+v", res)
	}
	if res["other"].Status != signals.Skipped {
		t.Errorf("other at post: %+v", res["other"])
	}
	if n := reloads(); n != 1 {
		t.Errorf("web reloaded %d times, want exactly 1", n)
	}
	if n := otherReloads(); n != 1 {
		t.Errorf("mail+other reloaded %d times, want 1 (mail only)", n)
	}
	// The deploys' pending results were resolved by the reload.
	if r := h.wait(d1)["web"]; r.Status != signals.OK {
		t.Errorf("deploy result after post: %+v", r)
	}
	_ = pre
	for dom, lin := range map[string]string{"a.test": "a.test", "www.a.test": "a.test", "b.test": "b.test"} {
		l := h.leafs[lin]
		checkFile(t, filepath.Join(dest, dom, "privkey.pem"), l.KeyPEM, 0o600, 65534)
		checkFile(t, filepath.Join(dest, dom, "fullchain.pem"), l.FullchainPEM(), 0o644, 65534)
	}
	checkFile(t, filepath.Join(dest, "mail.pem"), append(append([]byte{}, h.leafs["b.test"].KeyPEM...), h.leafs["b.test"].FullchainPEM()...), 0o600, 0)
	if _, err := os.Stat(filepath.Join(dest, "other")); !os.IsNotExist(err) {
		t.Errorf("app for other domains wrote something: %v", err)
	}
}

func checkFile(t *testing.T, p string, want []byte, mode os.FileMode, uid int) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: content differs", p)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), mode)
	}
	if u := statUID(st); u != uid {
		t.Errorf("%s: owner %d, want %d", p, u, uid)
	}
}

func TestDebounceWithoutPre(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	s := build(t, config.App{Name: "web", Domains: []string{"*"}, Reload: &config.AppReload{Command: argv}}, fast)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	a := h.renew("a.test", "a.test")
	b := h.renew("b.test", "b.test")
	id1 := h.emit(event.Deploy, a, "a.test")
	h.emit(event.Deploy, b, "b.test")
	time.Sleep(50 * time.Millisecond)
	if reloads() != 0 {
		t.Fatal("reloaded before the debounce")
	}
	waitFor(t, func() bool { return reloads() == 1 }, "one debounced reload")
	time.Sleep(300 * time.Millisecond)
	if n := reloads(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
	waitFor(t, func() bool { r, _ := h.sig.Results(id1); return len(r) == 1 && r[0].Status == signals.OK }, "first deploy's result resolved to ok")
}

func TestMaxDelayWithoutPost(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	r := fast
	r.MaxDelay = config.Duration(300 * time.Millisecond)
	s := build(t, config.App{Name: "web", Domains: []string{"*"}, Reload: &config.AppReload{Command: argv}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	h.emit(event.Pre, "")
	h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	time.Sleep(150 * time.Millisecond)
	if reloads() != 0 {
		t.Fatal("reloaded inside the run before max_delay")
	}
	waitFor(t, func() bool { return reloads() == 1 }, "reload at max_delay though post never came")
}

func TestChainFallbackAndRollback(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	failing, failCount := counter(t, 3)
	working, workCount := counter(t, 0)
	// Fallback: the first method fails, the second works.
	s := build(t, config.App{Name: "web", Domains: []string{"a.test"}, Reload: &config.AppReload{Command: working}}, fast)
	s.Reloaders = append([]apps.Reloader{&apps.CommandReloader{Argv: failing}}, s.Reloaders...)
	// Rollback: verification never sees the new leaf.
	s2 := build(t, config.App{Name: "stuck", Domains: []string{"a.test"},
		Copy: copyTo(dest), Reload: &config.AppReload{Command: working},
		Verify: &config.Verify{Address: "127.0.0.1:1"}}, fast)
	oldKey, oldCert := oldCopies(t, dest)
	verifier := func(ctx context.Context, v apps.VerifySpec, sni, fp string) error {
		return errors.New("served leaf is the old one")
	}
	apps.NewRunner(h.sig, []*apps.Spec{s, s2}, apps.Options{Log: zap.NewNop(), Verify: verifier})
	h.emit(event.Pre, "")
	h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	res := h.wait(h.emit(event.Post, ""))
	// web has no verify spec: the verifier is not consulted.
	if res["web"].Status != signals.OK || !strings.Contains(res["web"].Message, working[0]) {
		t.Errorf("web: %+v", res["web"])
	}
	if res["stuck"].Status != signals.Failed || !strings.Contains(res["stuck"].Message, "restored") {
		t.Errorf("stuck: %+v", res["stuck"])
	}
	if failCount() != 1 {
		t.Errorf("failing method ran %d times", failCount())
	}
	// web: 1 (after the failing one); stuck: 1 try + 1 reload after restore.
	if workCount() != 3 {
		t.Errorf("working method ran %d times, want 3", workCount())
	}
	checkFile(t, dest+"/key.pem", oldKey, 0o640, 0)
	checkFile(t, dest+"/cert.pem", oldCert, 0o644, 0)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		a    config.App
		want string
	}{
		{config.App{Name: "x", Type: "nope", Domains: []string{"*"}}, "unknown type"},
		{config.App{Name: "x", Type: "service"}, "no domains"},
		{config.App{Name: "x", Type: "service", Domains: []string{"*"}, Copy: &config.Copy{Certificate: "/a", Owner: "no-such-user-xyz"}}, "copy.owner"},
	} {
		tc.a.Pos = config.Pos{File: "f.yaml", Line: 7}
		_, err := apps.Build(&tc.a, &apps.Env{Log: zap.NewNop()})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "f.yaml:7") {
			t.Errorf("%+v: err = %v, want %q with file:line", tc.a, err, tc.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCopyWithoutPathsNeedsTypeDefaults(t *testing.T) {
	a := config.App{Name: "x", Type: "service", Domains: []string{"*"}, Copy: &config.Copy{Owner: "root"}, Pos: config.Pos{File: "f.yaml", Line: 3}}
	if _, err := apps.Build(&a, &apps.Env{Log: zap.NewNop()}); err == nil || !strings.Contains(err.Error(), "f.yaml:3") || !strings.Contains(err.Error(), "no default paths") {
		t.Fatalf("err = %v", err)
	}
}

// A change pending on its debounce (a catch-up replay, say) joins a certbot
// run that starts before the debounce fires: one reload, at post.
func TestPendingDebounceJoinsARun(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	r := fast
	r.Debounce = config.Duration(200 * time.Millisecond)
	s := build(t, config.App{Name: "web", Domains: []string{"*"}, Reload: &config.AppReload{Command: argv}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	h.emit(event.Pre, "")
	h.emit(event.Deploy, h.renew("b.test", "b.test"), "b.test")
	time.Sleep(500 * time.Millisecond)
	if n := reloads(); n != 0 {
		t.Fatalf("reloaded %d times inside the run", n)
	}
	res := h.wait(h.emit(event.Post, ""))
	if res["web"].Status != signals.OK || !strings.Contains(res["web"].Message, "a.test b.test") {
		t.Errorf("post: %+v", res["web"])
	}
	time.Sleep(300 * time.Millisecond)
	if n := reloads(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}

func TestIndexMatchesServes(t *testing.T) {
	mk := func(name string, doms ...string) *apps.Spec {
		return build(t, config.App{Name: name, Domains: doms}, fast)
	}
	specs := []*apps.Spec{mk("all", "*"), mk("exact", "a.test", "b.test"), mk("wild", "*.w.test"), mk("both", "a.test", "*.a.test")}
	x := apps.NewIndex(specs)
	for _, d := range []string{"a.test", "b.test", "x.w.test", "w.test", "*.w.test", "y.a.test", "c.test", "x.y.w.test"} {
		var want, got []string
		for _, s := range specs {
			if s.Serves(d) {
				want = append(want, s.Name)
			}
		}
		for _, s := range x.Lookup(d) {
			got = append(got, s.Name)
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Lookup(%q) = %v, Serves says %v", d, got, want)
		}
	}
}

// Without a pre, deploys that keep coming reset the debounce, but the
// reload still happens max_delay after the first change.
func TestMaxDelayCapsARunningDebounce(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	r := config.Reload{Debounce: config.Duration(200 * time.Millisecond), MaxDelay: config.Duration(600 * time.Millisecond), Timeout: config.Duration(5 * time.Second)}
	s := build(t, config.App{Name: "web", Domains: []string{"*"}, Reload: &config.AppReload{Command: argv}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	start := time.Now()
	for time.Since(start) < 900*time.Millisecond {
		h.wait(h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test"))
		time.Sleep(100 * time.Millisecond) // always inside the debounce
		if reloads() > 0 {
			break
		}
	}
	waitFor(t, func() bool { return reloads() > 0 }, "the reload max_delay forces")
	if took := time.Since(start); took < 550*time.Millisecond {
		t.Errorf("first reload after %s, before max_delay (600ms)", took)
	}
}

// A method whose result is not served within RepeatAfter runs once more
// (Apache's graceful, see apps/apache); one that is served in time, or an
// app without RepeatAfter, runs once.
func TestRepeatAfter(t *testing.T) {
	for _, tc := range []struct {
		name        string
		repeatAfter time.Duration
		servedAfter time.Duration // since the first verify call
		want        int
	}{
		{"served in time", 200 * time.Millisecond, 0, 1},
		{"served late", 100 * time.Millisecond, 300 * time.Millisecond, 2},
		{"off", 0, 300 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			argv, reloads := counter(t, 0)
			s := build(t, config.App{Name: "web", Domains: []string{"a.test"}, Reload: &config.AppReload{Command: argv},
				Verify: &config.Verify{Address: "127.0.0.1:1"}}, fast)
			s.RepeatAfter = tc.repeatAfter
			var first time.Time
			verifier := func(ctx context.Context, v apps.VerifySpec, sni, fp string) error {
				if first.IsZero() {
					first = time.Now()
				}
				// Like a daemon in its accept gap: the handshake waits.
				select {
				case <-time.After(time.Until(first.Add(tc.servedAfter))):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop(), Verify: verifier})
			h.emit(event.Pre, "")
			h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
			res := h.wait(h.emit(event.Post, ""))
			if res["web"].Status != signals.OK {
				t.Errorf("web: %+v, want ok", res["web"])
			}
			if n := reloads(); n != tc.want {
				t.Errorf("reload ran %d times, want %d", n, tc.want)
			}
		})
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (x/sys/unix lacks it).
const fsImmutableFL = 0x10

// copyTo is an app's copy of key and certificate into dest.
func copyTo(dest string) *config.Copy {
	return &config.Copy{Certificate: dest + "/cert.pem", PrivateKey: dest + "/key.pem"}
}

// oldCopies puts what a previous renewal installed in dest (key 0640,
// certificate 0644) and returns the two contents.
func oldCopies(t *testing.T, dest string) (key, cert []byte) {
	t.Helper()
	key, cert = []byte("old key\n"), []byte("old cert\n")
	if err := os.WriteFile(dest+"/key.pem", key, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest+"/cert.pem", cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// immutable sets or clears a file's immutable flag (root): renaming over
// it then fails, which is how a bind-mounted certificate behaves.
func immutable(t *testing.T, p string, on bool) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("get flags of %s: %v", p, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		t.Fatalf("set flags of %s: %v", p, err)
	}
}

// A deploy whose key went into place but whose certificate could not is
// put back: no new key is left beside the old certificate for the next
// reload, or the next boot, to load.
func TestPartialInstallIsPutBack(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	argv, reloads := counter(t, 0)
	s := build(t, config.App{Name: "web", Domains: []string{"a.test"},
		Copy: copyTo(dest), Reload: &config.AppReload{Command: argv}}, fast)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	oldKey, oldCert := oldCopies(t, dest)
	immutable(t, dest+"/cert.pem", true)
	t.Cleanup(func() { immutable(t, dest+"/cert.pem", false) })

	res := h.wait(h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test"))
	if r := res["web"]; r.Status != signals.Failed || !strings.Contains(r.Message, "put back as they were") {
		t.Errorf("web: %+v, want failed, the files put back", r)
	}
	checkFile(t, dest+"/key.pem", oldKey, 0o640, 0)
	checkFile(t, dest+"/cert.pem", oldCert, 0o644, 0)
	time.Sleep(300 * time.Millisecond) // past the debounce
	if n := reloads(); n != 0 {
		t.Errorf("%d reloads after a failed install, want 0", n)
	}
}

// A wildcard is verified with a name under it: servers match *.a.test for
// x.a.test, never for a.test, which may be another host.
func TestWildcardVerifiedUnderTheWildcard(t *testing.T) {
	h := newHarness(t)
	argv, _ := counter(t, 0)
	s := build(t, config.App{Name: "web", Domains: []string{"*.a.test", "a.test"}, Reload: &config.AppReload{Command: argv},
		Verify: &config.Verify{Address: "127.0.0.1:443"}}, fast)
	var mu sync.Mutex
	var snis []string
	verifier := func(ctx context.Context, v apps.VerifySpec, sni, fp string) error {
		mu.Lock()
		defer mu.Unlock()
		snis = append(snis, sni)
		return nil
	}
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop(), Verify: verifier})
	h.emit(event.Pre, "")
	h.emit(event.Deploy, h.renew("a.test", "a.test", "*.a.test"), "a.test", "*.a.test")
	if r := h.wait(h.emit(event.Post, ""))["web"]; r.Status != signals.OK {
		t.Fatalf("web: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(snis)
	if strings.Join(snis, " ") != "a.test certbus-verify.a.test" {
		t.Errorf("server names verified: %v, want a.test and certbus-verify.a.test", snis)
	}
}

// certbot killed between its pre and post: the run it opened ends once
// nothing of it came for max_delay, so a later lone deploy (lego, acme.sh)
// reloads after the debounce, not max_delay.
func TestLostPostEndsTheRun(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	r := fast
	r.MaxDelay = config.Duration(300 * time.Millisecond)
	s := build(t, config.App{Name: "web", Domains: []string{"*"}, Reload: &config.AppReload{Command: argv}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	h.wait(h.emit(event.Pre, ""))
	time.Sleep(400 * time.Millisecond) // no post
	id := h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	if res := h.wait(id)["web"]; res.Status != signals.Pending || !strings.Contains(res.Message, "reload in") {
		t.Errorf("lone deploy after a lost post: %+v, want pending a debounced reload", res)
	}
	waitFor(t, func() bool { return reloads() == 1 }, "the debounced reload")
}

// A config reload that takes the app's reload away while a deploy is
// pending keeps the installed files: the install is the whole job now.
func TestUpdateDroppingReloadKeepsFiles(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	argv, reloads := counter(t, 0)
	app := config.App{Name: "web", Domains: []string{"a.test"},
		Copy: copyTo(dest), Reload: &config.AppReload{Command: argv}}
	runner, err := apps.NewRunner(h.sig, []*apps.Spec{build(t, app, fast)}, apps.Options{Log: zap.NewNop(), Signal: h.sig})
	if err != nil {
		t.Fatal(err)
	}
	h.emit(event.Pre, "")
	live := h.renew("a.test", "a.test")
	h.wait(h.emit(event.Deploy, live, "a.test"))
	app.Reload = nil
	if err := runner.Update(context.Background(), []*apps.Spec{build(t, app, fast)}); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(h.emit(event.Post, ""))["web"]; r.Status != signals.OK {
		t.Errorf("post after the reload was dropped: %+v", r)
	}
	want, _ := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	checkFile(t, dest+"/cert.pem", want, 0o644, 0)
	if n := reloads(); n != 0 {
		t.Errorf("%d reloads, want 0", n)
	}
}

// A rollback that could not put back every file does not reload the daemon
// onto what may be a key beside the wrong certificate (a failed reload
// usually left it serving): it says which file and what to do.
func TestPartialRollbackDoesNotReloadAMix(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	argv, reloads := counter(t, 0)
	s := build(t, config.App{Name: "web", Domains: []string{"a.test"},
		Copy: copyTo(dest), Reload: &config.AppReload{Command: argv},
		Verify: &config.Verify{Address: "127.0.0.1:1"}}, fast)
	oldKey, _ := oldCopies(t, dest)
	// The verifier fails, and makes the new certificate file immutable
	// first: its restore fails, the key's does not.
	verifier := func(ctx context.Context, v apps.VerifySpec, sni, fp string) error {
		immutable(t, dest+"/cert.pem", true)
		return errors.New("served leaf is the old one")
	}
	t.Cleanup(func() { immutable(t, dest+"/cert.pem", false) })
	apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop(), Verify: verifier})
	h.emit(event.Pre, "")
	h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	r := h.wait(h.emit(event.Post, ""))["web"]
	if r.Status != signals.Failed || !strings.Contains(r.Message, "rollback failed, the daemon was not reloaded again") || !strings.Contains(r.Message, "cert.pem") {
		t.Errorf("web: %+v, want failed, rollback failed naming cert.pem, no reload", r)
	}
	checkFile(t, dest+"/key.pem", oldKey, 0o640, 0)
	if n := reloads(); n != 1 {
		t.Errorf("%d reloads, want 1 (the failed one only)", n)
	}
}

// A certbot run longer than max_delay, whose first deploys concern other
// apps, is still one run for every app: one reload, at post.
func TestLongRunReloadsOnce(t *testing.T) {
	h := newHarness(t)
	argv, reloads := counter(t, 0)
	r := fast
	r.MaxDelay = config.Duration(600 * time.Millisecond)
	web := build(t, config.App{Name: "web", Domains: []string{"a.test", "b.test"}, Reload: &config.AppReload{Command: argv}}, r)
	other, _ := counter(t, 0)
	mail := build(t, config.App{Name: "mail", Domains: []string{"c.test"}, Reload: &config.AppReload{Command: other}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{web, mail}, apps.Options{Log: zap.NewNop()})
	h.emit(event.Pre, "")
	c := h.renew("c.test", "c.test")
	for range 4 { // 800 ms of the run for mail alone
		time.Sleep(200 * time.Millisecond)
		h.emit(event.Deploy, c, "c.test")
	}
	h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	time.Sleep(200 * time.Millisecond) // past the debounce, inside max_delay
	h.emit(event.Deploy, h.renew("b.test", "b.test"), "b.test")
	if res := h.wait(h.emit(event.Post, ""))["web"]; res.Status != signals.OK {
		t.Errorf("web at post: %+v", res)
	}
	time.Sleep(300 * time.Millisecond) // a debounced reload would have come
	if n := reloads(); n != 1 {
		t.Errorf("web reloaded %d times in one run, want 1", n)
	}
}

// A deploy still pending when a config reload took the app's reload away
// is resolved by the next deploy, which records the files: not left
// "pending" for good.
func TestPendingResolvedAfterReloadDropped(t *testing.T) {
	h := newHarness(t)
	argv, _ := counter(t, 0)
	slow := fast
	slow.Debounce = config.Duration(time.Minute)
	slow.MaxDelay = config.Duration(2 * time.Minute)
	app := config.App{Name: "web", Domains: []string{"a.test", "b.test"}, Reload: &config.AppReload{Command: argv}}
	runner, err := apps.NewRunner(h.sig, []*apps.Spec{build(t, app, slow)}, apps.Options{Log: zap.NewNop(), Signal: h.sig})
	if err != nil {
		t.Fatal(err)
	}
	first := h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	if r := h.wait(first)["web"]; r.Status != signals.Pending {
		t.Fatalf("first deploy: %+v", r)
	}
	app.Reload = nil
	if err := runner.Update(context.Background(), []*apps.Spec{build(t, app, slow)}); err != nil {
		t.Fatal(err)
	}
	h.wait(h.emit(event.Deploy, h.renew("b.test", "b.test"), "b.test"))
	if r, _ := h.sig.Results(first); len(r) != 1 || r[0].Status != signals.OK {
		t.Errorf("first deploy after the second recorded the files: %+v, want ok", r)
	}
}

// The silence that ends a lost run ends it for every app, also for one
// whose first deploy after it comes a moment after another app's.
func TestLostPostEndsTheRunForEveryApp(t *testing.T) {
	h := newHarness(t)
	webReload, webReloads := counter(t, 0)
	mailReload, _ := counter(t, 0)
	r := fast
	r.MaxDelay = config.Duration(300 * time.Millisecond)
	web := build(t, config.App{Name: "web", Domains: []string{"a.test"}, Reload: &config.AppReload{Command: webReload}}, r)
	mail := build(t, config.App{Name: "mail", Domains: []string{"c.test"}, Reload: &config.AppReload{Command: mailReload}}, r)
	apps.NewRunner(h.sig, []*apps.Spec{web, mail}, apps.Options{Log: zap.NewNop()})
	h.wait(h.emit(event.Pre, ""))
	time.Sleep(400 * time.Millisecond) // no post
	h.emit(event.Deploy, h.renew("c.test", "c.test"), "c.test")
	time.Sleep(50 * time.Millisecond)
	id := h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test")
	if res := h.wait(id)["web"]; res.Status != signals.Pending || !strings.Contains(res.Message, "reload in") {
		t.Errorf("web's lone deploy after another app's: %+v, want pending a debounced reload", res)
	}
	waitFor(t, func() bool { return webReloads() == 1 }, "web's debounced reload")
}

// A reload that fails because the shutdown's time ran out is still rolled
// back, and the daemon reloaded onto the previous files.
func TestRollbackWhenTheShutdownTimeRanOut(t *testing.T) {
	h := newHarness(t)
	dest := installtest.Dir(t)
	argv, reloads := counter(t, 0)
	s := build(t, config.App{Name: "web", Domains: []string{"a.test"},
		Copy: copyTo(dest), Reload: &config.AppReload{Command: argv}}, fast)
	oldKey, oldCert := oldCopies(t, dest)
	runner, err := apps.NewRunner(h.sig, []*apps.Spec{s}, apps.Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	h.emit(event.Pre, "")
	h.wait(h.emit(event.Deploy, h.renew("a.test", "a.test"), "a.test"))
	spent, cancel := context.WithCancel(context.Background())
	cancel()
	runner.Flush(spent) // the reload cannot start: its context is done
	checkFile(t, dest+"/key.pem", oldKey, 0o640, 0)
	checkFile(t, dest+"/cert.pem", oldCert, 0o644, 0)
	if n := reloads(); n != 1 {
		t.Errorf("%d reloads, want 1 (onto the previous files)", n)
	}
}
