package migrate

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"github.com/certbus/certbus/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCase is one renewal config in testdata. The files named certbot-*
// were written by certbot 2.1.0 against pebble (see testdata/README).
type goldenCase struct {
	file       string
	removed    []string // keys removed by default
	kept       []string // keys kept by default
	marker     bool     // the Plinth line goes
	errLine    int      // broken files: the line reported
	errContain string
}

var goldenCases = []goldenCase{
	{file: "certbot-certbus.conf", removed: []string{"pre_hook", "post_hook", "renew_hook"}},
	{file: "certbot-freedombox.conf", removed: []string{"pre_hook", "post_hook", "renew_hook"}},
	{file: "certbot-no-hooks.conf"},
	{file: "certbot-triple-quotes.conf", removed: []string{"post_hook"}, kept: []string{"pre_hook", "renew_hook"}},
	{file: "certbot-user-hooks.conf", kept: []string{"pre_hook", "post_hook", "renew_hook"}},
	{file: "crlf.conf", removed: []string{"pre_hook", "post_hook"}},
	{file: "freedombox-2017.conf", removed: []string{"renew_hook", "post_hook"}, kept: []string{"deploy_hook"}, marker: true},
	{file: "freedombox-2019.conf", removed: []string{"pre_hook", "renew_hook", "post_hook"}, marker: true},
	{file: "nested.conf", removed: []string{"deploy_hook"}},
	{file: "quoting.conf", removed: []string{"pre_hook", "post_hook", "renew_hook"}, kept: []string{"deploy_hook"}},
	{file: "user-hooks.conf", kept: []string{"pre_hook", "post_hook", "renew_hook"}},
	{file: "broken-duplicate.conf", errLine: 5, errContain: `duplicate key "renew_hook"`},
	{file: "broken-quote.conf", errLine: 4, errContain: "badly quoted"},
	{file: "broken-toplevel-hook.conf", errLine: 2, errContain: "outside any section"},
	{file: "broken-triple.conf", errLine: 5, errContain: "unterminated '''"},
	{file: "broken-utf8.conf", errLine: 2, errContain: "invalid UTF-8"},
}

func keys(hs []Hook) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Key)
	}
	return out
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.file, func(t *testing.T) {
			in := readTestdata(t, tc.file)
			e, err := analyze(in, false)
			if tc.errLine != 0 {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("analyze: got %v, want a *ParseError", err)
				}
				if pe.Line != tc.errLine || !strings.Contains(pe.Msg, tc.errContain) {
					t.Errorf("error %q; want line %d containing %q", err, tc.errLine, tc.errContain)
				}
				if _, err := analyze(in, true); err == nil {
					t.Errorf("--all: no error for a broken file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(e.removed); !slices.Equal(got, tc.removed) {
				t.Errorf("removed %v, want %v", got, tc.removed)
			}
			if got := keys(e.kept); !slices.Equal(got, tc.kept) {
				t.Errorf("kept %v, want %v", got, tc.kept)
			}
			if e.marker != tc.marker {
				t.Errorf("marker removed = %v, want %v", e.marker, tc.marker)
			}
			checkGolden(t, tc.file+".golden", e.output)
			checkIdempotent(t, e.output, false)

			all, err := analyze(in, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(all.kept) != 0 {
				t.Errorf("--all kept %v", keys(all.kept))
			}
			if got, want := keys(all.removed), append(slices.Clone(tc.removed), tc.kept...); len(got) != len(want) {
				t.Errorf("--all removed %v, want all of %v", got, want)
			}
			checkGolden(t, tc.file+".all.golden", all.output)
			checkIdempotent(t, all.output, true)
		})
	}
}

// checkIdempotent asserts that a second pass over out finds nothing to do.
func checkIdempotent(t *testing.T, out []byte, all bool) {
	t.Helper()
	e, err := analyze(out, all)
	if err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if len(e.removed) != 0 || !bytes.Equal(e.output, out) {
		t.Errorf("second pass removed %v", keys(e.removed))
	}
}

func TestHooksReported(t *testing.T) {
	e, err := analyze(readTestdata(t, "quoting.conf"), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Hook{
		{Key: "pre_hook", Command: "/usr/bin/certbus hook pre", Line: 13, Reason: ReasonCertbus},
		{Key: "post_hook", Command: "CERTBUS_BUS=system certbus --bus system hook post", Line: 14, Reason: ReasonCertbus},
		{Key: "renew_hook", Command: "/usr/bin/certbus hook deploy", Line: 15, Reason: ReasonCertbus},
	}
	if !slices.Equal(e.removed, want) {
		t.Errorf("removed:\n got %+v\nwant %+v", e.removed, want)
	}
	wantKept := []Hook{{Key: "deploy_hook", Command: "\n/usr/local/bin/reload-everything --all\n", Line: 16}}
	if !slices.Equal(e.kept, wantKept) {
		t.Errorf("kept:\n got %+v\nwant %+v", e.kept, wantKept)
	}
}

// copyTestdata puts every testdata file that is not a golden file into
// <tmp>/renewal and returns <tmp>.
func copyTestdata(t *testing.T) string {
	t.Helper()
	le := t.TempDir()
	dir := filepath.Join(le, "renewal")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.IsDir() || strings.HasSuffix(ent.Name(), ".golden") || ent.Name() == "README" {
			continue
		}
		data := readTestdata(t, ent.Name())
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return le
}

// snapshot records every byte, mode and mtime under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		p := filepath.Join(dir, ent.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		out[ent.Name()] = fi.Mode().String() + " " + fi.ModTime().String() + "\n" + string(data)
	}
	return out
}

func TestRunDryRunChangesNothing(t *testing.T) {
	le := copyTestdata(t)
	dir := filepath.Join(le, "renewal")
	before := snapshot(t, dir)
	r, err := Run(Options{LetsencryptDir: le, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, dir); !mapsEqual(before, after) {
		t.Errorf("dry run changed the directory")
	}
	changed := 0
	for _, f := range r.Files {
		if f.Backup != "" {
			t.Errorf("%s: dry run reports backup %s", f.Path, f.Backup)
		}
		if f.Changed() {
			changed++
			checkPatch(t, f.Path, f.Diff, filepath.Join("testdata", filepath.Base(f.Path)+".golden"))
		}
	}
	if changed != 8 {
		t.Errorf("%d files would change, want 8", changed)
	}
	if n := len(r.Failed()); n != 5 {
		t.Errorf("%d files failed, want 5", n)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkPatch applies diff to a copy of orig with patch(1) and compares the
// result with the golden file: the diff must say exactly what a run does.
func checkPatch(t *testing.T, orig, diff, golden string) {
	t.Helper()
	if _, err := exec.LookPath("patch"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("patch(1) is needed to check the diffs: %v", err)
		}
		t.Logf("skipping the patch(1) check: %v", err)
		return
	}
	tmp := filepath.Join(t.TempDir(), "f.conf")
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("patch", "--quiet", "--batch", "--no-backup-if-mismatch", tmp)
	cmd.Stdin = strings.NewReader(diff)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("patch %s: %v\n%s\ndiff:\n%s", orig, err, out, diff)
	}
	got, _ := os.ReadFile(tmp)
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: patched file differs from %s", orig, golden)
	}
}

func TestRun(t *testing.T) {
	le := copyTestdata(t)
	dir := filepath.Join(le, "renewal")
	// A restrictive mode must survive the rewrite.
	if err := os.Chmod(filepath.Join(dir, "freedombox-2019.conf"), 0o640); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	r, err := Run(Options{LetsencryptDir: le})
	if err != nil {
		t.Fatal(err)
	}
	if r.RenewalDir != dir {
		t.Errorf("RenewalDir = %s, want %s", r.RenewalDir, dir)
	}
	var names []string
	for _, f := range r.Files {
		names = append(names, filepath.Base(f.Path))
	}
	var want []string
	for _, c := range goldenCases {
		want = append(want, c.file)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	for i, f := range r.Files {
		tc := goldenCases[slices.IndexFunc(goldenCases, func(c goldenCase) bool { return c.file == names[i] })]
		got, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		orig := readTestdata(t, tc.file)
		if tc.errLine != 0 {
			var pe *ParseError
			if !errors.As(f.Err, &pe) || pe.Path != f.Path || pe.Line != tc.errLine {
				t.Errorf("%s: error %v, want a *ParseError for %s line %d", tc.file, f.Err, f.Path, tc.errLine)
			}
			if !bytes.Equal(got, orig) {
				t.Errorf("%s: a broken file was changed", tc.file)
			}
			if _, err := os.Stat(f.Path + BackupSuffix); err == nil {
				t.Errorf("%s: a broken file got a backup", tc.file)
			}
			continue
		}
		if f.Err != nil {
			t.Errorf("%s: %v", tc.file, f.Err)
			continue
		}
		if want := readTestdata(t, tc.file+".golden"); !bytes.Equal(got, want) {
			t.Errorf("%s: content differs from the golden file", tc.file)
		}
		if len(tc.removed) == 0 {
			if f.Backup != "" || f.Changed() {
				t.Errorf("%s: unchanged file has backup %q, diff %q", tc.file, f.Backup, f.Diff)
			}
			continue
		}
		if bak, err := os.ReadFile(f.Backup); err != nil || !bytes.Equal(bak, orig) {
			t.Errorf("%s: backup %s does not hold the original (%v)", tc.file, f.Backup, err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "freedombox-2019.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	bfi, err := os.Stat(filepath.Join(dir, "freedombox-2019.conf"+BackupSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if bfi.Mode().Perm() != 0o640 {
		t.Errorf("backup mode %v, want 0640", bfi.Mode().Perm())
	}
	after := snapshot(t, dir)
	if after["freedombox-2019.conf_plinth_backup"] != before["freedombox-2019.conf_plinth_backup"] {
		t.Errorf("a file not named *.conf was touched")
	}
	for name := range after {
		if strings.Contains(name, "certbus-tmp") {
			t.Errorf("temporary file %s left behind", name)
		}
	}

	// A second run changes nothing, not even the backups.
	r2, err := Run(Options{LetsencryptDir: le})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r2.Files {
		if f.Changed() || f.Backup != "" || len(f.Removed) != 0 {
			t.Errorf("second run: %s changed (removed %v)", f.Path, keys(f.Removed))
		}
	}
	if again := snapshot(t, dir); !mapsEqual(after, again) {
		t.Errorf("second run changed the directory")
	}
}

func TestRunKeepsOwner(t *testing.T) {
	testutil.NeedRoot(t) // to give a file another owner
	le := t.TempDir()
	dir := filepath.Join(le, "renewal")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "owned.conf")
	if err := os.WriteFile(p, readTestdata(t, "certbot-certbus.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	r, err := Run(Options{LetsencryptDir: le})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Files[0].Err; err != nil || !r.Files[0].Changed() {
		t.Fatalf("err %v, changed %v", err, r.Files[0].Changed())
	}
	for _, name := range []string{p, p + BackupSuffix} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1234 || st.Gid != 5678 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d mode %v, want 1234:5678 0600", name, st.Uid, st.Gid, fi.Mode().Perm())
		}
	}
}

func TestRunRefusesNonRegular(t *testing.T) {
	le := t.TempDir()
	dir := filepath.Join(le, "renewal")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(le, "elsewhere.conf")
	orig := readTestdata(t, "certbot-certbus.conf")
	if err := os.WriteFile(target, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "a-link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "b-dir.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "c-fifo.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Run(Options{LetsencryptDir: le})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 3 {
		t.Fatalf("got %d files, want 3", len(r.Files))
	}
	for i, kind := range []string{"(a symlink)", "(a directory)", "(a named pipe)"} {
		if err := r.Files[i].Err; err == nil || !strings.Contains(err.Error(), "not a regular file "+kind) {
			t.Errorf("%s: got %v, want an error naming %s", r.Files[i].Path, err, kind)
		}
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, orig) {
		t.Errorf("the symlink's target was changed")
	}
}

func TestRunMissingDir(t *testing.T) {
	_, err := Run(Options{LetsencryptDir: filepath.Join(t.TempDir(), "nope")})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

// TestRunHonoursCertbotLock holds the lock the way certbot itself does, in
// another process, with certbot's own lock module.
func TestRunHonoursCertbotLock(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import certbot._internal.lock").Run(); err != nil {
		testutil.Missing(t, "certbot's python modules are needed (apt-get install certbot): %v", err)
	}
	le := t.TempDir()
	dir := filepath.Join(le, "renewal")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "example.org.conf")
	orig := readTestdata(t, "certbot-certbus.conf")
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", "import sys\nfrom certbot._internal import lock\nl = lock.lock_dir(sys.argv[1])\nprint('locked', flush=True)\nsys.stdin.read()\nl.release()\n", le)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("certbot lock helper: %q, %v", line, err)
	}

	if _, err := Run(Options{LetsencryptDir: le}); !errors.Is(err, ErrCertbotRunning) {
		t.Errorf("with certbot running: got %v, want ErrCertbotRunning", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, orig) {
		t.Errorf("file changed while certbot held its lock")
	}
	if r, err := Run(Options{LetsencryptDir: le, DryRun: true}); err != nil || !r.Files[0].Changed() {
		t.Errorf("a dry run needs no lock: %v", err)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	r, err := Run(Options{LetsencryptDir: le})
	if err != nil || !r.Files[0].Changed() || r.Files[0].Err != nil {
		t.Fatalf("after certbot finished: %v, %+v", err, r)
	}
	if _, err := os.Stat(filepath.Join(le, ".certbot.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
	// certbot can take its lock again.
	if out, err := exec.Command(py, "-c", "import sys\nfrom certbot._internal import lock\nlock.lock_dir(sys.argv[1]).release()\n", le).CombinedOutput(); err != nil {
		t.Errorf("certbot cannot lock after migrate: %v\n%s", err, out)
	}
}
