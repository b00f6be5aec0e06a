package signals

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOrderPerSubscriber(t *testing.T) {
	s := New[int](0)
	var mu sync.Mutex
	got := map[string][]int{}
	for _, name := range []string{"a", "b"} {
		if err := s.Connect(name, time.Second, func(_ context.Context, e int) (Status, string) {
			if name == "b" && e%7 == 0 {
				time.Sleep(time.Millisecond) // b is slower; order must hold anyway
			}
			mu.Lock()
			got[name] = append(got[name], e)
			mu.Unlock()
			return OK, ""
		}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 500
	for i := 0; i < n; i++ {
		if err := s.Emit(fmt.Sprint(i), i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Wait(context.Background(), fmt.Sprint(n-1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for name, seq := range got {
		if len(seq) != n {
			t.Fatalf("%s got %d events, want %d", name, len(seq), n)
		}
		for i, e := range seq {
			if e != i {
				t.Fatalf("%s: event %d delivered at position %d", name, e, i)
			}
		}
	}
}

func TestPanicAndTimeoutAreFailedAndOthersProceed(t *testing.T) {
	s := New[string](0)
	release := make(chan struct{})
	defer close(release)
	s.Connect("panics", time.Second, func(_ context.Context, e string) (Status, string) {
		if e == "boom" {
			panic("kaboom")
		}
		return OK, "fine"
	})
	s.Connect("hangs", 100*time.Millisecond, func(ctx context.Context, e string) (Status, string) {
		if e == "boom" {
			<-release // ignores ctx on purpose: a truly stuck app
		}
		return OK, "fine"
	})
	s.Connect("healthy", time.Second, func(_ context.Context, e string) (Status, string) {
		return OK, "did " + e
	})
	start := time.Now()
	s.Emit("1", "boom")
	s.Emit("2", "next")
	res, err := s.Wait(context.Background(), "1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"hangs": Failed, "healthy": OK, "panics": Failed}
	for _, r := range res {
		if want[r.Subscriber] != r.Status {
			t.Errorf("%s: %s (%s), want %s", r.Subscriber, r.Status, r.Message, want[r.Subscriber])
		}
	}
	if !strings.Contains(res[0].Message, "timed out") || !strings.Contains(res[2].Message, "kaboom") {
		t.Errorf("messages: %+v", res)
	}
	// The hung subscriber moved on: event 2 completes for everyone.
	res2, err := s.Wait(context.Background(), "2")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res2 {
		if r.Status != OK {
			t.Errorf("event 2: %+v", r)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s; a hung subscriber delayed the others", d)
	}
}

func TestWaitUnknownTimeoutAndUpdate(t *testing.T) {
	s := New[int](2)
	if _, err := s.Wait(context.Background(), "nope"); err != ErrUnknownEvent {
		t.Fatalf("err = %v", err)
	}
	block := make(chan struct{})
	var observed []Result
	var mu sync.Mutex
	s.Observe(func(id string, r Result) { mu.Lock(); observed = append(observed, r); mu.Unlock() })
	s.Connect("slow", 0, func(context.Context, int) (Status, string) { <-block; return Pending, "later" })
	s.Emit("x", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	res, err := s.Wait(ctx, "x")
	cancel()
	if err == nil || len(res) != 1 || res[0].Status != Pending || res[0].Message != "still running" {
		t.Fatalf("partial wait = %+v, %v", res, err)
	}
	close(block)
	res, _ = s.Wait(context.Background(), "x")
	if res[0].Message != "later" {
		t.Fatalf("res = %+v", res)
	}
	s.Update("x", Result{Subscriber: "slow", Status: OK, Message: "reloaded"})
	res, _ = s.Results("x")
	if res[0].Status != OK {
		t.Fatalf("after update: %+v", res)
	}
	mu.Lock()
	if len(observed) != 2 || observed[1].Status != OK {
		t.Errorf("observed %+v", observed)
	}
	mu.Unlock()
	// keep=2: old finished records are forgotten.
	s.Emit("y", 2)
	s.Emit("z", 3)
	s.Wait(context.Background(), "z")
	s.Emit("w", 4)
	if _, ok := s.Results("x"); ok {
		t.Error("record x was not forgotten")
	}
	if err := s.Emit("w", 5); err == nil {
		t.Error("duplicate id accepted")
	}
}

func TestCloseDrains(t *testing.T) {
	s := New[int](0)
	var n int
	var mu sync.Mutex
	s.Connect("a", 0, func(context.Context, int) (Status, string) {
		time.Sleep(time.Millisecond)
		mu.Lock()
		n++
		mu.Unlock()
		return OK, ""
	})
	for i := 0; i < 50; i++ {
		s.Emit(fmt.Sprint(i), i)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Errorf("handled %d of 50 before Close returned", n)
	}
	if err := s.Emit("late", 1); err != ErrClosed {
		t.Errorf("Emit after Close = %v", err)
	}
}

func BenchmarkEmitWait(b *testing.B) {
	s := New[int](0)
	for i := 0; i < 4; i++ {
		s.Connect(fmt.Sprint("app", i), time.Second, func(context.Context, int) (Status, string) { return Skipped, "" })
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprint(i)
		s.Emit(id, i)
		s.Wait(context.Background(), id)
	}
}

func TestFilteredSubscriberIsNotWoken(t *testing.T) {
	s := New[int](0)
	var calls sync.Map
	var observed sync.Map
	s.Observe(func(id string, r Result) { observed.Store(id+" "+r.Subscriber, r.Status) })
	for _, name := range []string{"evens", "all"} {
		var want Filter[int]
		if name == "evens" {
			want = func(e int) (bool, string) {
				if e == 99 {
					panic("a broken filter delivers")
				}
				return e%2 == 0, "odd"
			}
		}
		s.ConnectFiltered(name, time.Second, want, func(_ context.Context, e int) (Status, string) {
			calls.Store(fmt.Sprint(name, e), true)
			return OK, ""
		})
	}
	for i := 0; i < 4; i++ {
		s.Emit(fmt.Sprint(i), i)
	}
	s.Emit("99", 99)
	for i, want := range []Status{OK, Skipped, OK, Skipped} {
		res, err := s.Wait(context.Background(), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if res[1].Subscriber != "evens" || res[1].Status != want || want == Skipped && res[1].Message != "odd" {
			t.Errorf("event %d: %+v, want evens %s", i, res[1], want)
		}
		// A decline is not passed to the observer (nothing to journal);
		// what a handler returned is.
		if _, seen := observed.Load(fmt.Sprint(i, " evens")); seen != (want == OK) {
			t.Errorf("event %d: evens observed = %v, want %v", i, seen, want == OK)
		}
		if res[0].Status != OK {
			t.Errorf("event %d: unfiltered subscriber %+v", i, res[0])
		}
		if _, called := calls.Load(fmt.Sprint("evens", i)); called != (want == OK) {
			t.Errorf("event %d: handler called = %v", i, called)
		}
	}
	if res, _ := s.Wait(context.Background(), "99"); res[1].Status != OK {
		t.Errorf("panicking filter: %+v, want the event delivered", res[1])
	}
	s.Close(context.Background())
}

// A record still running when it is among the oldest is kept, and the
// finished ones behind it are forgotten past keep; once it finishes, it
// goes too.
func TestForgetKeepsRunningRecords(t *testing.T) {
	s := New[int](2)
	defer s.Close(context.Background())
	release := make(chan struct{})
	onlyFirst := func(e int) (bool, string) { return e == 1, "not the first" }
	if err := s.ConnectFiltered("app", 0, onlyFirst, func(context.Context, int) (Status, string) {
		<-release
		return OK, ""
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	emit := func(id string, e int) {
		t.Helper()
		if err := s.Emit(id, e); err != nil {
			t.Fatal(err)
		}
	}
	emit("a", 1) // runs until released
	for i, id := range []string{"b", "c", "d"} {
		emit(id, i+2)
		if _, err := s.Wait(ctx, id); err != nil { // declined: done at once
			t.Fatal(err)
		}
	}
	if _, ok := s.Results("a"); !ok {
		t.Error("running record a was forgotten")
	}
	if _, ok := s.Results("b"); ok {
		t.Error("finished record b over keep=2 is still remembered")
	}
	for _, id := range []string{"c", "d"} {
		if _, ok := s.Results(id); !ok {
			t.Errorf("record %s within keep was forgotten", id)
		}
	}
	close(release)
	if _, err := s.Wait(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	emit("e", 5)
	for id, want := range map[string]bool{"a": false, "c": false, "d": true, "e": true} {
		if _, ok := s.Results(id); ok != want {
			t.Errorf("after a finished and e came: record %s remembered = %v, want %v", id, ok, want)
		}
	}
	for i, id := range []string{"f", "g"} {
		emit(id, i+6)
		if _, err := s.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]bool{"d": false, "e": false, "f": true, "g": true} {
		if _, ok := s.Results(id); ok != want {
			t.Errorf("after f and g: record %s remembered = %v, want %v", id, ok, want)
		}
	}
}

// SetTimeout gives a subscriber a new timeout for the events it handles
// from then on (an app's reload budget after a config reload).
func TestSetTimeout(t *testing.T) {
	s := New[string](0)
	defer s.Close(context.Background())
	s.Connect("slow", 50*time.Millisecond, func(ctx context.Context, e string) (Status, string) {
		select {
		case <-time.After(200 * time.Millisecond):
			return OK, "done"
		case <-ctx.Done():
			return Failed, "cancelled"
		}
	})
	s.Emit("1", "a")
	res, err := s.Wait(context.Background(), "1")
	if err != nil || len(res) != 1 || res[0].Status != Failed || !strings.Contains(res[0].Message, "timed out after 50ms") {
		t.Fatalf("before SetTimeout: %+v %v, want timed out after 50ms", res, err)
	}
	s.SetTimeout("slow", 5*time.Second)
	s.Emit("2", "b")
	if res, err := s.Wait(context.Background(), "2"); err != nil || len(res) != 1 || res[0].Status != OK {
		t.Errorf("after SetTimeout(5s): %+v %v, want ok", res, err)
	}
}
