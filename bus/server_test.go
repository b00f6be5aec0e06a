package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/internal/testutil"
	"github.com/certbus/certbus/signals"
)

type memJournal struct{ n int }

func (j *memJournal) Append(journal.Entry) error { j.n++; return nil }

// gatedCore holds every log entry until gate is closed, as a stalled
// journald would.
type gatedCore struct {
	zapcore.Core
	gate chan struct{}
}

func (c gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c gatedCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	<-c.gate
	return c.Core.Write(e, f)
}

// Accept returns before its event is logged and announced on the bus, and
// Stop returns only after every accepted event was.
func TestAcceptReturnsBeforeAnnounceAndStopDrains(t *testing.T) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	conn := b.Connect(t)
	core, logs := observer.New(zap.InfoLevel)
	j := &memJournal{}
	gate := make(chan struct{})
	s := NewServer(conn, signals.New[*event.Event](16), j, &Policy{Checker: &certs.Checker{}}, zap.New(gatedCore{core, gate}))
	const n = 5
	accepted := make(chan error, 1)
	go func() {
		for range n {
			if _, err := s.Accept(event.Pre, nil, AcceptOptions{}); err != nil {
				accepted <- err
				return
			}
		}
		accepted <- nil
	}()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept waits for its event to be logged")
	}
	if j.n != n {
		t.Errorf("%d journal entries, want %d (journaled before Accept returns)", j.n, n)
	}
	if got := logs.Len(); got != 0 {
		t.Errorf("%d entries logged through a closed gate", got)
	}
	stopped := make(chan struct{})
	go func() { s.Stop(context.Background()); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while accepted events were still to be announced")
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	<-stopped
	if got := logs.FilterMessage("event accepted").Len(); got != n {
		t.Errorf("%d events announced when Stop returned, want %d", got, n)
	}
	if _, err := s.Accept(event.Pre, nil, AcceptOptions{}); err == nil {
		t.Error("accepted an event after Stop")
	}
	// A second Stop waits as the first did; one whose context ends
	// returns then.
	if err := s.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	s2 := NewServer(conn, signals.New[*event.Event](16), &memJournal{}, &Policy{Checker: &certs.Checker{}}, zap.New(gatedCore{core, make(chan struct{})}))
	if _, err := s2.Accept(event.Pre, nil, AcceptOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The log is stalled for good: Stop returns when ctx ends, and says so.
	if err := s2.Stop(ctx); err == nil || !strings.Contains(err.Error(), "not yet logged and announced") {
		t.Errorf("Stop with a stalled log: %v", err)
	}
}

// A caller the bus cannot identify (gone, or no answer) is not refused but
// failed: the hook spools such an event instead of losing it (a caller
// the policy does not allow is refused: TestCallerChecks in cmd/certbus).
func TestCallerCheckFailureIsNotARefusal(t *testing.T) {
	b := testutil.StartBus(t, testutil.BusOptions{Permissive: true})
	conn := b.Connect(t)
	s := NewServer(conn, signals.New[*event.Event](16), &memJournal{}, &Policy{Checker: &certs.Checker{}}, zap.NewNop())
	derr := s.checkCaller(":1.9999") // no such connection
	if derr == nil || derr.Name != errFailed {
		t.Fatalf("unknown sender: %v, want %s", derr, errFailed)
	}
	if _, ok := classify("system", *derr).(*UnreachableError); !ok {
		t.Errorf("the hook would not spool %v", derr)
	}
}
