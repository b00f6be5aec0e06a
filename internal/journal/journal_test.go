package journal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppendRecentRotateAndTornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	j.maxSize = 2000 // rotate often
	for i := 0; i < 50; i++ {
		id := fmt.Sprint("e", i)
		if err := j.Append(Entry{ID: id, Operation: "deploy", Time: time.Now(), Domains: map[string]EntryDomain{"a.test": {Fingerprint: "ff"}}}); err != nil {
			t.Fatal(err)
		}
		if err := j.AppendResults(id, map[string]EntryOutcome{"web": {Status: "pending"}}); err != nil {
			t.Fatal(err)
		}
		if err := j.AppendResults(id, map[string]EntryOutcome{"web": {Status: "ok"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Bounded while open too (padding included): the current file and
	// the rotated one.
	size := func(p string) int64 { st, _ := os.Stat(p); return st.Size() }
	if s := size(filepath.Join(dir, "journal.jsonl")) + size(filepath.Join(dir, "journal.jsonl.1")); s > 2*2000 {
		t.Errorf("open journal holds %d bytes: not bounded by twice maxSize", s)
	}
	j.Close()
	// A crash mid-write leaves a torn last line.
	f, _ := os.OpenFile(filepath.Join(dir, "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"torn","operat`)
	f.Close()
	if s := size(filepath.Join(dir, "journal.jsonl")) + size(filepath.Join(dir, "journal.jsonl.1")); s > 2*2000+100 {
		t.Errorf("journal holds %d bytes: not bounded", s)
	}
	j, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got, err := j.Recent(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[4].ID != "e49" {
		t.Fatalf("recent = %+v", got)
	}
	if got[4].Results["web"].Status != "ok" {
		t.Errorf("results not merged, last wins: %+v", got[4].Results)
	}
	// An event appended after the crash is readable: the torn tail was cut.
	if err := j.Append(Entry{ID: "after", Operation: "pre", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got, _ = j.Recent(2)
	if len(got) != 2 || got[1].ID != "after" || got[0].ID != "e49" {
		t.Fatalf("after a torn tail: %+v", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, "journal.jsonl")); st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v", st.Mode().Perm())
	}
}

// While open, the journal is padded: entries overwrite padding, so the
// file's size stays put between growth steps (what lets fdatasync skip the
// inode), JSON readers see the padding as whitespace, and after a crash
// (no Close) a torn line inside the padding is padded over at the next
// Open. A clean Close leaves plain JSON lines.
func TestPaddingCrashAndClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.jsonl")
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(id string) Entry {
		return Entry{ID: id, Operation: "deploy", Time: time.Now(), Domains: map[string]EntryDomain{"é.test": {Fingerprint: "ff"}}}
	}
	if err := j.Append(entry("first")); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	grown := st.Size()
	if grown != growStep {
		t.Fatalf("size after the first entry = %d, want the growth step %d", grown, growStep)
	}
	for i := range 20 {
		if err := j.Append(entry(fmt.Sprint("e", i))); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(path); st.Size() != grown {
		t.Errorf("size changed from %d to %d within the padding", grown, st.Size())
	}
	data, _ := os.ReadFile(path)
	body := bytes.TrimRight(data, " ")
	if len(body) == len(data) || !bytes.HasSuffix(body, []byte("\n")) || bytes.Count(body, []byte("\n")) != 21 {
		t.Fatalf("want 21 lines then padding, got %d lines, %d of %d bytes padding", bytes.Count(body, []byte("\n")), len(data)-len(body), len(data))
	}
	// A JSON stream reader (what jq does) takes the padded file.
	dec := json.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var en Entry
		if err := dec.Decode(&en); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding entry %d: %v", n, err)
		}
		n++
	}
	if n != 21 {
		t.Errorf("decoded %d entries, want 21", n)
	}
	// Crash: the descriptor (and its lock) goes without Close's trim, and
	// a torn line (ending inside a two-byte character) is left in the
	// padding.
	j.f.Close()
	j.lock.Close()
	torn := []byte(`{"id":"torn","domains":{"` + "\xc3")
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt(torn, int64(len(body)))
	f.Close()
	j2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !bytes.Equal(bytes.TrimRight(data, " "), body) {
		t.Errorf("torn line not padded over:\n%q", data[len(body):len(body)+len(torn)+2])
	}
	if err := j2.Append(entry("after")); err != nil {
		t.Fatal(err)
	}
	got, err := j2.Recent(2)
	if err != nil || len(got) != 2 || got[0].ID != "e19" || got[1].ID != "after" {
		t.Fatalf("after the crash: %+v, %v", got, err)
	}
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Errorf("closed journal is not plain JSON lines: ends %q", data[max(0, len(data)-20):])
	}
	if bytes.Count(data, []byte("\n")) != 22 {
		t.Errorf("closed journal holds %d lines, want 22", bytes.Count(data, []byte("\n")))
	}
}

// A file of padding only, or with no newline at all, is an empty journal.
func TestRepairWithoutEntries(t *testing.T) {
	for name, content := range map[string]string{"padding": "      ", "garbage": `{"id":"x"`, "empty": ""} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "journal.jsonl"), []byte(content), 0o600)
			j, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if j.size != 0 {
				t.Errorf("entries end at %d, want 0", j.size)
			}
			if err := j.Append(Entry{ID: "a", Operation: "pre"}); err != nil {
				t.Fatal(err)
			}
			got, _ := j.Recent(5)
			if len(got) != 1 || got[0].ID != "a" {
				t.Errorf("recent = %+v", got)
			}
			j.Close()
		})
	}
}

// A reader beside the daemon (certbus status) sees what the daemon wrote
// and changes nothing: the daemon's entries before, during and after the
// read all stay readable, and the file is byte for byte what the daemon
// alone would have left.
func TestReadRecentBesideTheWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.jsonl")
	if got, err := ReadRecent(dir, 5); err != nil || len(got) != 0 {
		t.Fatalf("no journal yet: %+v, %v", got, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("ReadRecent created %s", path)
	}
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(Entry{ID: "a", Operation: "pre", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	got, err := ReadRecent(dir, 5)
	if err != nil || len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("ReadRecent = %+v, %v", got, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("ReadRecent changed the journal")
	}
	for _, id := range []string{"b", "c"} {
		if err := j.Append(Entry{ID: id, Operation: "pre", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	got, err = ReadRecent(dir, 5)
	if err != nil || len(got) != 3 || got[2].ID != "c" {
		t.Fatalf("after more entries: %+v, %v", got, err)
	}
	if got, _ := j.Recent(5); len(got) != 3 {
		t.Errorf("the writer's own Recent: %+v", got)
	}
}

// Only one writer: a second Open of the same journal fails, saying what to
// do, and changes nothing; once the first is closed, it opens.
func TestSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Entry{ID: "a", Operation: "pre", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "journal.jsonl")
	before, _ := os.ReadFile(path)
	if j2, err := Open(dir); err == nil {
		j2.Close()
		t.Fatal("a second writer opened the journal")
	} else if !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("error %q does not say the journal is in use and what to do", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the refused open changed the journal")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(dir)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	j2.Close()
}

// The lock holds across rotation: a second writer trying all the while the
// first rotates again and again never gets in, and the first never loses
// its journal to it.
func TestLockHeldAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.maxSize = 600 // a rotation every few entries
	stop := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				got <- nil
				return
			default:
			}
			if j2, err := Open(dir); err == nil {
				j2.Close()
				got <- fmt.Errorf("a second writer opened the journal during rotation")
				return
			}
		}
	}()
	for i := range 300 {
		if err := j.Append(Entry{ID: fmt.Sprint("e", i), Operation: "pre", Time: time.Now()}); err != nil {
			close(stop)
			t.Fatalf("append %d: %v", i, err)
		}
	}
	close(stop)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// A rotation that fails (here its rename: journal.jsonl.1 is a directory
// that is not empty) refuses that entry only: once the cause is gone, the
// next one reopens the journal and goes in, without a restart.
func TestRotationFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.maxSize = 600
	old := filepath.Join(dir, "journal.jsonl.1")
	if err := os.MkdirAll(filepath.Join(old, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	var failed int
	for i := 0; failed == 0 && i < 100; i++ {
		if err := j.Append(Entry{ID: fmt.Sprint("e", i), Operation: "pre", Time: time.Now()}); err != nil {
			if !strings.Contains(err.Error(), "rotate journal") {
				t.Fatalf("append %d: %v, want a rotation error", i, err)
			}
			failed = i
		}
	}
	if failed == 0 {
		t.Fatal("no rotation was attempted")
	}
	if err := os.RemoveAll(old); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Entry{ID: "after", Operation: "pre", Time: time.Now()}); err != nil {
		t.Fatalf("append once the cause is gone: %v", err)
	}
	got, err := j.Recent(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1].ID != "after" {
		t.Errorf("recent after recovering: %+v", got)
	}
	for _, e := range got {
		if e.ID == fmt.Sprint("e", failed) {
			t.Errorf("the refused entry %s was journaled", e.ID)
		}
	}
	j.Close()
	if err := j.Append(Entry{ID: "closed", Operation: "pre", Time: time.Now()}); err == nil {
		t.Error("append after Close succeeded")
	}
}

// A reader that opened the current file just before a rotation finds that
// file again under the rotated name: its entries are read once.
func TestReadRecentDuringRotation(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := j.Append(Entry{ID: fmt.Sprint("e", i), Operation: "pre", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	cur := filepath.Join(dir, "journal.jsonl")
	if err := os.Link(cur, cur+".1"); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecent(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, " ") != "e0 e1 e2" {
		t.Errorf("entries %v, want e0 e1 e2 once each", ids)
	}
}
