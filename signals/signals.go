// Package signals is a typed, ordered, in-process signal. Emit hands an event
// to one dispatcher goroutine, which queues it for every connected subscriber;
// each subscriber receives events in emit order on its own goroutine, so a
// slow, hung or panicking subscriber never delays the others. Every
// subscriber's outcome is recorded per event and can be waited for.
//
// It is not a general message bus: there is no filtering, no replay and no
// persistence; the caller journals events before it emits them.
package signals

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Status is a subscriber's outcome for one event.
type Status string

// Outcomes, as reported by Wait.
const (
	OK      Status = "ok"
	Skipped Status = "skipped"
	Failed  Status = "failed"
	Pending Status = "pending"
)

// Result is one subscriber's outcome for one event.
type Result struct {
	Subscriber string
	Status     Status
	Message    string
}

// Handler handles one event. It should return within its timeout; ctx is
// cancelled when the timeout passes.
type Handler[E any] func(ctx context.Context, e E) (Status, string)

// ErrUnknownEvent is returned by Wait for an event id never emitted or long
// forgotten.
var ErrUnknownEvent = errors.New("unknown event")

// ErrClosed is returned by Emit after Close.
var ErrClosed = errors.New("signal closed")

// DefaultKeep is how many events' results are remembered in memory (each
// holds one result per subscriber; with a thousand apps that adds up). Older
// ones are for the caller to answer from its journal.
const DefaultKeep = 512

// Signal delivers events of type E to subscribers.
type Signal[E any] struct {
	keep int

	// emitMu orders Emit's sends (emit order = dispatch order) without
	// holding mu, which the dispatcher takes to record filtered results.
	emitMu sync.Mutex
	mu     sync.Mutex
	// subs and names are shared by the events emitted while they hold:
	// only appended to, or replaced (a thousand subscribers, 512 events
	// kept, no copy per event).
	subs    []*subscriber[E]
	names   []string
	records map[string]*record
	order   []string // emit order, for forgetting the oldest
	closed  bool

	observe func(id string, r Result)

	in      chan item[E]
	stopped chan struct{}
	wg      sync.WaitGroup // subscriber goroutines
}

type item[E any] struct {
	id   string
	ev   E
	rec  *record
	subs []*subscriber[E]
}

type record struct {
	names   []string // subscribers at emit (shared, read only)
	results map[string]Result
	// declined holds, per message, the indexes in names of the
	// subscribers whose filter declined the event: four bytes each rather
	// than a Result each, since most of a thousand apps decline most
	// events.
	declined map[string][]int32
	left     int
	done     chan struct{}
}

// delivery is one queued event for one subscriber: kept small, since every
// subscriber holds one per event not yet handled.
type delivery[E any] struct {
	id  string
	ev  E
	rec *record
}

type subscriber[E any] struct {
	name    string
	timeout atomic.Int64 // a time.Duration; SetTimeout changes it
	h       Handler[E]
	want    Filter[E]

	mu     sync.Mutex
	queue  []delivery[E]
	wake   chan struct{}
	closed bool
}

// New creates a signal and starts its dispatcher. keep bounds the number of
// events whose results are remembered (0 means DefaultKeep).
func New[E any](keep int) *Signal[E] {
	if keep <= 0 {
		keep = DefaultKeep
	}
	s := &Signal[E]{
		keep:    keep,
		records: map[string]*record{},
		in:      make(chan item[E], 256),
		stopped: make(chan struct{}),
	}
	go s.dispatch()
	return s
}

// Observe sets a function called with every result as it is recorded or
// updated (the daemon journals them), except a filter's declines. Set it before the first Emit; it runs
// on the subscriber's goroutine and must be quick.
func (s *Signal[E]) Observe(f func(id string, r Result)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe = f
}

// Filter tells, on the dispatcher's goroutine, whether a subscriber wants
// an event; when it does not, its result is Skipped with the message given,
// and its goroutine is not woken. It must be quick and must not block.
type Filter[E any] func(e E) (want bool, skipped string)

// Connect adds a subscriber; name must be unique (it is the app name in
// results). A timeout of 0 means none.
func (s *Signal[E]) Connect(name string, timeout time.Duration, h Handler[E]) error {
	return s.ConnectFiltered(name, timeout, nil, h)
}

// ConnectFiltered is Connect with a filter (nil: every event). Events the
// filter declines are recorded Skipped at once, so a thousand subscribers
// that each serve a few domains cost an event a thousand calls, not a
// thousand goroutine wake-ups. Declines reach Wait and Results, not the
// observer: a subscriber that was not concerned has nothing to journal.
func (s *Signal[E]) ConnectFiltered(name string, timeout time.Duration, want Filter[E], h Handler[E]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, o := range s.subs {
		if o.name == name {
			return fmt.Errorf("subscriber %q already connected", name)
		}
	}
	sub := &subscriber[E]{name: name, h: h, want: want, wake: make(chan struct{}, 1)}
	sub.timeout.Store(int64(timeout))
	// Appending never changes what an earlier event's slice shows (it
	// writes past that slice's length); only Disconnect must copy.
	s.subs = append(s.subs, sub)
	s.names = append(s.names, name)
	s.wg.Add(1)
	go s.serve(sub)
	return nil
}

// SetTimeout changes a subscriber's timeout for the events it handles from
// now on (a config reload gave its app other limits).
func (s *Signal[E]) SetTimeout(name string, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.subs {
		if o.name == name {
			o.timeout.Store(int64(timeout))
		}
	}
}

// Disconnect removes a subscriber after it has handled what was already
// queued for it.
func (s *Signal[E]) Disconnect(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.subs {
		if o.name == name {
			s.subs = slices.Delete(slices.Clone(s.subs), i, i+1)
			s.names = slices.Delete(slices.Clone(s.names), i, i+1)
			o.close()
			return
		}
	}
}

// Emit queues e under id for every subscriber connected now. It returns
// once the event is queued; delivery happens on the subscribers' goroutines.
func (s *Signal[E]) Emit(id string, e E) error {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, dup := s.records[id]; dup {
		s.mu.Unlock()
		return fmt.Errorf("event %s emitted twice", id)
	}
	rec := &record{results: map[string]Result{}, done: make(chan struct{})}
	s.records[id] = rec
	s.order = append(s.order, id)
	if drop := len(s.order) - s.keep; drop > 0 {
		// Forget the oldest finished records. A record still running
		// stays, in order, just before the ones kept, and is looked at
		// again by the next Emit; only those over keep are looked at, so
		// an Emit costs a map lookup or two, not one per record kept,
		// and nothing is copied but the running ones.
		k := drop
		for i := drop - 1; i >= 0; i-- {
			old := s.order[i]
			if isDone(s.records[old]) {
				delete(s.records, old)
				continue
			}
			k--
			s.order[k] = old
		}
		// Slicing off the front: append reallocates once the backing
		// array is used up, copying only what is kept.
		s.order = s.order[k:]
	}
	// The subscribers are those connected at Emit. The send happens under
	// emitMu only, so the dispatcher may take mu while Emit waits on a
	// full queue.
	subs := s.subs
	rec.names = s.names
	rec.left = len(subs)
	if len(subs) == 0 {
		close(rec.done)
	}
	s.mu.Unlock()
	s.in <- item[E]{id: id, ev: e, rec: rec, subs: subs}
	return nil
}

func isDone(r *record) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// dispatch is the one worker that fans events out in order.
func (s *Signal[E]) dispatch() {
	defer close(s.stopped)
	for it := range s.in {
		for i, sub := range it.subs {
			if sub.want != nil {
				if ok, msg := s.filter(sub, it.ev); !ok {
					s.decline(it.rec, i, msg)
					continue
				}
			}
			sub.push(it)
		}
	}
}

// decline records that the filter of subscriber i declined the event:
// Skipped for Wait, not passed to the observer (nothing happened to
// journal).
func (s *Signal[E]) decline(rec *record, i int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.declined == nil {
		rec.declined = map[string][]int32{}
	}
	rec.declined[msg] = append(rec.declined[msg], int32(i))
	rec.left--
	if rec.left == 0 {
		close(rec.done)
	}
}

func (sub *subscriber[E]) push(it item[E]) {
	sub.mu.Lock()
	sub.queue = append(sub.queue, delivery[E]{id: it.id, ev: it.ev, rec: it.rec})
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber[E]) close() {
	sub.mu.Lock()
	sub.closed = true
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber[E]) next() (delivery[E], bool, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if len(sub.queue) > 0 {
		it := sub.queue[0]
		sub.queue[0] = delivery[E]{}
		sub.queue = sub.queue[1:]
		if len(sub.queue) == 0 {
			sub.queue = nil // let the backing array go
		}
		return it, true, false
	}
	return delivery[E]{}, false, sub.closed
}

// serve runs one subscriber's handlers in order.
func (s *Signal[E]) serve(sub *subscriber[E]) {
	defer s.wg.Done()
	for {
		it, ok, closed := sub.next()
		if !ok {
			if closed {
				return
			}
			<-sub.wake
			continue
		}
		st, msg := s.call(sub, it)
		s.record(it, Result{Subscriber: sub.name, Status: st, Message: msg})
	}
}

// filter runs a subscriber's filter; a panicking filter delivers the event
// (the handler then decides, under its own recovery).
func (s *Signal[E]) filter(sub *subscriber[E], e E) (ok bool, msg string) {
	defer func() {
		if recover() != nil {
			ok = true
		}
	}()
	return sub.want(e)
}

// call runs the handler with its timeout and turns a panic into Failed. A
// handler that overruns its timeout is abandoned (its context is cancelled)
// and the subscriber moves on to the next event.
func (s *Signal[E]) call(sub *subscriber[E], it delivery[E]) (Status, string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		st  Status
		msg string
	}
	ch := make(chan out, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- out{Failed, fmt.Sprintf("panic: %v\n%s", r, firstFrames(debug.Stack()))}
			}
		}()
		st, msg := sub.h(ctx, it.ev)
		ch <- out{st, msg}
	}()
	var timer <-chan time.Time
	timeout := time.Duration(sub.timeout.Load())
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case o := <-ch:
		return o.st, o.msg
	case <-timer:
		return Failed, fmt.Sprintf("timed out after %s", timeout)
	}
}

func firstFrames(stack []byte) string {
	const max = 2048
	if len(stack) > max {
		return string(stack[:max]) + "..."
	}
	return string(stack)
}

func (s *Signal[E]) record(it delivery[E], r Result) {
	s.mu.Lock()
	if _, seen := it.rec.results[r.Subscriber]; seen {
		s.mu.Unlock()
		return
	}
	it.rec.results[r.Subscriber] = r
	it.rec.left--
	if it.rec.left == 0 {
		close(it.rec.done)
	}
	obs := s.observe
	s.mu.Unlock()
	if obs != nil {
		obs(it.id, r)
	}
}

// Update replaces a recorded result, for work a subscriber reported Pending
// and finished later (a coalesced reload). Unknown ids are ignored.
func (s *Signal[E]) Update(id string, r Result) {
	s.mu.Lock()
	rec, ok := s.records[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	if _, had := rec.results[r.Subscriber]; !had {
		s.mu.Unlock()
		return
	}
	rec.results[r.Subscriber] = r
	obs := s.observe
	s.mu.Unlock()
	if obs != nil {
		obs(id, r)
	}
}

// Wait blocks until every subscriber has handled event id, or ctx ends, and
// returns the results sorted by subscriber name. On ctx's end it returns
// what is known so far with ctx's error.
func (s *Signal[E]) Wait(ctx context.Context, id string) ([]Result, error) {
	s.mu.Lock()
	rec, ok := s.records[id]
	s.mu.Unlock()
	if !ok {
		return nil, ErrUnknownEvent
	}
	select {
	case <-rec.done:
		return s.snapshot(rec), nil
	case <-ctx.Done():
		return s.snapshot(rec), ctx.Err()
	}
}

// Results returns what is recorded for id so far.
func (s *Signal[E]) Results(id string) ([]Result, bool) {
	s.mu.Lock()
	rec, ok := s.records[id]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	return s.snapshot(rec), true
}

func (s *Signal[E]) snapshot(rec *record) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	declined := make([]string, len(rec.names))
	isDeclined := make([]bool, len(rec.names))
	for msg, idx := range rec.declined {
		for _, i := range idx {
			declined[i], isDeclined[i] = msg, true
		}
	}
	out := make([]Result, 0, len(rec.names))
	for i, n := range rec.names {
		r, ok := rec.results[n]
		switch {
		case ok:
		case isDeclined[i]:
			r = Result{Subscriber: n, Status: Skipped, Message: declined[i]}
		default:
			r = Result{Subscriber: n, Status: Pending, Message: "still running"}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subscriber < out[j].Subscriber })
	return out
}

// Close stops accepting events, lets every subscriber finish what is queued
// (drain), and returns when they are done or ctx ends.
func (s *Signal[E]) Close(ctx context.Context) error {
	s.emitMu.Lock()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.in)
	}
	s.mu.Unlock()
	s.emitMu.Unlock()
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	for _, sub := range s.subs {
		sub.close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
