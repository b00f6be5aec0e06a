package journal

import (
	"fmt"
	"os"
	"path/filepath"
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
	j.Close()
	// A crash mid-write leaves a torn last line.
	f, _ := os.OpenFile(filepath.Join(dir, "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"torn","operat`)
	f.Close()
	size := func(p string) int64 { st, _ := os.Stat(p); return st.Size() }
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
