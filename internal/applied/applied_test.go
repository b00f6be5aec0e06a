package applied

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func rec(fp string) Record {
	return Record{Fingerprint: fp, NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Lineage: "/le/live/a", Time: time.Now().UTC()}
}

func TestSetManyPersistsAndSkipsNoChange(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMany("web", map[string]Record{"a.test": rec("aa"), "www.a.test": rec("aa")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("web", "a.test", rec("aa")); err != nil || s.writes != 1 {
		t.Errorf("the same fingerprint again: err %v, %d writes, want 1 (nothing changed)", err, s.writes)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := again.Get("web", "www.a.test"); !ok || r.Fingerprint != "aa" {
		t.Errorf("reopened: %+v %v", r, ok)
	}
}

// Changes that arrive while the file is being written share the next write,
// and every caller returns only once its change is on disk.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A big state, as with a thousand apps: each write takes a while.
	for i := range 2000 {
		s.m[fmt.Sprintf("old-%d", i)] = map[string]Record{"x.test": rec("00")}
	}
	const n = 200
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- s.Set(fmt.Sprintf("app-%d", i), "a.test", rec(fmt.Sprint(i)))
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.writes >= n/2 {
		t.Errorf("%d writes for %d concurrent changes, want them grouped", s.writes, n)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r, ok := again.Get(fmt.Sprintf("app-%d", i), "a.test"); !ok || r.Fingerprint != fmt.Sprint(i) {
			t.Fatalf("app-%d not on disk: %+v %v", i, r, ok)
		}
	}
}

func TestSaveErrorReachesEveryCaller(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	// state_dir is a file: the write cannot happen.
	if err := os.WriteFile(filepath.Join(dir, "state"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The same change again is no change, but it is not on disk either.
	if err := s.Set("app-x", "a.test", rec("aa")); err == nil {
		t.Error("first call: no error though nothing could be written")
	}
	if err := s.Set("app-x", "a.test", rec("aa")); err == nil {
		t.Error("the same record again: no error though it never reached the disk")
	}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Set(fmt.Sprintf("app-%d", i), "a.test", rec("aa")); err == nil {
				t.Errorf("app-%d: no error though nothing could be written", i)
			}
		}()
	}
	wg.Wait()
}

// A file that is not the object of records is an error naming it and what
// to do; null too, where an empty store would panic at the first record.
func TestOpenCorrupt(t *testing.T) {
	for _, content := range []string{"{not json", "null", "[]"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "applied.json"), []byte(content), 0o600)
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "move it aside") {
			t.Errorf("applied.json holding %s: %v, want an error saying what to do", content, err)
		}
	}
}
