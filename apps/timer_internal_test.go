package apps

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/signals"
)

// countingReloader counts its runs.
type countingReloader struct{ n atomic.Int32 }

func (r *countingReloader) Name() string                                  { return "count" }
func (r *countingReloader) Reload(ctx context.Context, run RunInfo) error { r.n.Add(1); return nil }

// A debounce callback that was already waiting for the app when a pre
// stopped its timer does nothing: the pending change joins the run and is
// reloaded once, at post.
func TestStaleTimerCallbackDoesNothing(t *testing.T) {
	sig := signals.New[*event.Event](0)
	defer sig.Close(context.Background())
	rl := &countingReloader{}
	s := &Spec{Name: "web", All: true, Reloaders: []Reloader{rl}, Debounce: time.Hour, MaxDelay: 2 * time.Hour, Timeout: 5 * time.Second}
	r, err := NewRunner(sig, []*Spec{s}, Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	a := r.apps[0]
	ctx := context.Background()
	m := &event.Material{Fingerprint: "ff"}
	if st, msg := a.handle(ctx, &event.Event{ID: "d1", Operation: event.Deploy, Domains: map[string]*event.Material{"a.test": m}}); st != signals.Pending {
		t.Fatalf("lone deploy: %s %s", st, msg)
	}
	a.mu.Lock()
	stale := a.timerGen // the debounce timer's generation
	a.mu.Unlock()
	a.handle(ctx, &event.Event{ID: "p1", Operation: event.Pre})
	a.fireTimer(stale, "debounce") // its callback, come too late
	if n := rl.n.Load(); n != 0 {
		t.Fatalf("%d reloads after pre from a stopped timer, want 0", n)
	}
	if st, msg := a.handle(ctx, &event.Event{ID: "q1", Operation: event.Post}); st != signals.OK || rl.n.Load() != 1 {
		t.Errorf("post: %s %s, %d reloads; want ok and 1", st, msg, rl.n.Load())
	}
}
