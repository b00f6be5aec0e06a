package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"go.uber.org/zap"

	"github.com/certbus/certbus/internal/certs"
	"github.com/certbus/certbus/internal/event"
	"github.com/certbus/certbus/internal/journal"
	"github.com/certbus/certbus/signals"
)

// Policy is what may change on a config reload: who may call, and where
// certificates may come from.
type Policy struct {
	Checker       *certs.Checker
	AllowedGroups []string
	AllowedUsers  []string
}

// Journal is where accepted events are made durable.
type Journal interface {
	Append(journal.Entry) error
}

// MaxWait caps the timeout a caller may ask of Wait.
const MaxWait = 30 * time.Minute

// Server is the exported org.certbus.Dispatcher1 object.
type Server struct {
	conn    *dbus.Conn
	signal  *signals.Signal[*event.Event]
	journal Journal
	log     *zap.Logger
	policy  atomic.Pointer[Policy]
	// lookupUser resolves a uid to its name and group names; replaced in
	// tests.
	lookupUser func(uid uint32) (string, []string, error)

	// History answers Wait for events the signal no longer knows (before
	// a restart); nil: none.
	History func(id string) ([]Result, bool)

	callersMu sync.Mutex
	callers   map[string]callerID

	mu        sync.Mutex // serialises accept: journal order = emit order
	seq       uint64
	lastEvent time.Time // when the last event was accepted (for Event.Quiet)
	closing   atomic.Bool

	// announce carries accepted events, in order, to the goroutine that
	// logs them and emits CertificateEvent, so that the caller's reply
	// does not wait for either; announced is closed when it has drained.
	announce  chan announcement
	announced chan struct{}
}

// NewServer makes the object; nothing is exported until Start.
func NewServer(conn *dbus.Conn, sig *signals.Signal[*event.Event], j Journal, p *Policy, log *zap.Logger) *Server {
	s := &Server{conn: conn, signal: sig, journal: j, log: log, lookupUser: lookupUser,
		announce: make(chan announcement, 1024), announced: make(chan struct{})}
	s.policy.Store(p)
	go s.announcer()
	return s
}

// SetPolicy swaps the policy (config reload).
func (s *Server) SetPolicy(p *Policy) { s.policy.Store(p) }

var errShuttingDown = errors.New("the daemon is shutting down")

// ErrNotPrimaryOwner means another process owns the name already.
var ErrNotPrimaryOwner = errors.New("not the primary owner")

// Start exports the object and its introspection, THEN requests the name
// (do not queue), so no caller ever reaches a half-ready daemon.
func (s *Server) Start() error {
	obj := &object{s: s}
	if err := s.conn.ExportMethodTable(map[string]any{
		"Notify": obj.Notify,
		"Wait":   obj.Wait,
	}, Path, Interface); err != nil {
		return fmt.Errorf("export %s: %w", Path, err)
	}
	if err := s.conn.Export(introspect.Introspectable(introspection), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("export introspection: %w", err)
	}
	reply, err := s.conn.RequestName(Name, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request name %s: %w", Name, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("request name %s: %w (is another certbus serve running? `busctl status %s` shows the owner)", Name, ErrNotPrimaryOwner, Name)
	}
	return nil
}

// Stop releases the name so no new call arrives; calls already running
// finish, and it returns once every accepted event has been logged and
// announced (before the daemon closes its connection), or with an error
// when ctx is done first.
func (s *Server) Stop(ctx context.Context) error {
	if !s.closing.Swap(true) {
		_, _ = s.conn.ReleaseName(Name)
		// No commit runs once closing is seen under mu: every
		// accepted event is queued before the queue closes.
		s.mu.Lock()
		close(s.announce)
		s.mu.Unlock()
	}
	select {
	case <-s.announced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d accepted events not yet logged and announced: %w", len(s.announce), ctx.Err())
	}
}

// AcceptOptions mark events the daemon makes itself.
type AcceptOptions struct {
	Replay bool     // from the spool or catch-up
	Only   []string // apps the event is for; empty: all
}

// Accept validates, journals and emits an event from inside the daemon
// (spool replay and catch-up use it); Notify calls it after the caller check.
func (s *Server) Accept(op event.Operation, domains map[string]map[string]string, o AcceptOptions) (*event.Event, error) {
	mat, err := s.policy.Load().Checker.Check(op, domains)
	if err != nil {
		return nil, err
	}
	return s.commit(op, mat, o)
}

// commit journals and emits an event whose material passed the checks.
func (s *Server) commit(op event.Operation, mat map[string]*event.Material, o AcceptOptions) (*event.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil, errShuttingDown
	}
	s.seq++
	now := time.Now()
	ev := &event.Event{ID: newID(s.seq), Operation: op, Time: now.UTC(), Domains: mat, Replay: o.Replay, Only: o.Only}
	if !s.lastEvent.IsZero() {
		ev.Quiet = now.Sub(s.lastEvent)
	}
	if err := s.journal.Append(journal.FromEvent(ev)); err != nil {
		return nil, fmt.Errorf("journal event: %w", err)
	}
	s.lastEvent = now
	if err := s.signal.Emit(ev.ID, ev); err != nil {
		return nil, fmt.Errorf("emit event: %w", err)
	}
	s.announce <- announcement{id: ev.ID, op: string(op), names: ev.DomainNames(), replay: o.Replay, only: o.Only, domains: signalDomains(ev)}
	return ev, nil
}

// announcement is what the log line and the signal say of an event: names
// and paths, never the certificate and key bytes.
type announcement struct {
	id, op  string
	names   []string
	replay  bool
	only    []string
	domains map[string]map[string]string
}

// announcer logs each accepted event and emits its CertificateEvent, in
// the order of acceptance, off the caller's path: the event is durable
// and the apps have it before either happens.
func (s *Server) announcer() {
	defer close(s.announced)
	for a := range s.announce {
		s.log.Info("event accepted", zap.String("event", a.id), zap.String("operation", a.op),
			zap.Strings("domains", a.names), zap.Bool("replay", a.replay), zap.Strings("only", a.only))
		if err := s.conn.Emit(Path, Interface+".CertificateEvent", a.id, a.op, a.domains); err != nil {
			s.log.Warn("emit CertificateEvent", zap.String("event", a.id), zap.Error(err))
		}
	}
}

// signalDomains is the domain map as the CertificateEvent signal carries it.
func signalDomains(ev *event.Event) map[string]map[string]string {
	out := make(map[string]map[string]string, len(ev.Domains))
	for d, m := range ev.Domains {
		info := map[string]string{}
		for k, v := range m.Paths {
			info[k] = v
		}
		out[d] = info
	}
	return out
}

// newID makes a sortable, unique event id: UTC time, sequence, random.
func newID(seq uint64) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + strconv.FormatUint(seq, 10) + "-" + hex.EncodeToString(b[:])
}

// object carries the exported methods; godbus runs each call on its own
// goroutine.
type object struct{ s *Server }

// Notify is the D-Bus method Notify(s, a{sa{ss}}) -> s.
func (o *object) Notify(sender dbus.Sender, operation string, domains map[string]map[string]string) (string, *dbus.Error) {
	s := o.s
	// The caller check is a round trip to the bus and validation reads and
	// parses files: independent, and neither writes anything, so the
	// question to the bus goes out first and validation runs while it is
	// answered (a hook's Notify is the first call of a new connection,
	// whose credentials are never cached). Nothing is journaled until both
	// passed, and a refused caller gets only the refusal, never a word
	// about the files; validation opens nothing outside the certificate
	// roots (certs.Roots.ReadFile checks where a path leads before it
	// opens anything for reading). What a refused caller could still learn
	// is how long validation took (whether a path under the roots exists),
	// and it can make the daemon parse files under the roots: only where
	// the bus lets it call at all, which the shipped policy does not
	// (root and group certbus, DESIGN section 2).
	checked := s.startCallerCheck(sender)
	op := event.Operation(operation)
	mat, err := s.policy.Load().Checker.Check(op, domains)
	if derr := checked(); derr != nil {
		return "", derr
	}
	var ev *event.Event
	if err == nil {
		ev, err = s.commit(op, mat, AcceptOptions{})
	}
	if err != nil {
		if certs.IsInvalid(err) {
			s.log.Warn("event refused", zap.String("sender", string(sender)), zap.String("operation", operation), zap.Error(err))
			return "", dbus.NewError(ErrInvalidArgument, []any{err.Error()})
		}
		if errors.Is(err, errShuttingDown) {
			return "", dbus.NewError(ErrShuttingDown, []any{err.Error()})
		}
		s.log.Error("event not taken", zap.String("operation", operation), zap.Error(err))
		return "", dbus.NewError(errFailed, []any{err.Error()})
	}
	return ev.ID, nil
}

// Wait is the D-Bus method Wait(s, u) -> a(sss).
func (o *object) Wait(sender dbus.Sender, id string, timeoutMS uint32) ([]Result, *dbus.Error) {
	s := o.s
	if derr := s.checkCaller(sender); derr != nil {
		return nil, derr
	}
	d := time.Duration(timeoutMS) * time.Millisecond
	if d > MaxWait || d == 0 {
		d = MaxWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res, err := s.signal.Wait(ctx, id)
	if errors.Is(err, signals.ErrUnknownEvent) && s.History != nil {
		if out, ok := s.History(id); ok {
			return out, nil
		}
	}
	if errors.Is(err, signals.ErrUnknownEvent) {
		return nil, dbus.NewError(ErrUnknownEvent, []any{fmt.Sprintf("unknown event %q (never seen, or forgotten since)", id)})
	}
	out := make([]Result, 0, len(res))
	for _, r := range res {
		out = append(out, Result{App: r.Subscriber, Status: string(r.Status), Message: r.Message})
	}
	return out, nil
}

// Result is one app's outcome, the (sss) of Wait.
type Result struct {
	App     string
	Status  string
	Message string
}

// checkCaller is the daemon's own lock, independent of the bus policy.
// The caller's uid comes from the bus (GetConnectionCredentials, which
// carries what GetConnectionUnixUser does plus the groups the bus itself
// judges membership by); a unique name is never reused on a bus, so the
// answer is cached per sender.
func (s *Server) checkCaller(sender dbus.Sender) *dbus.Error {
	return s.startCallerCheck(sender)()
}

// startCallerCheck is checkCaller in two halves: it sends the bus its
// question now, and the function it returns waits for the answer and
// judges it.
func (s *Server) startCallerCheck(sender dbus.Sender) func() *dbus.Error {
	answer := s.startCaller(string(sender))
	return func() *dbus.Error {
		c, err := answer()
		if err != nil {
			// Not a no: the bus did not say who is calling (no answer
			// in time, an error). Failed, which the hook spools; nothing
			// was committed, and a caller the replay would refuse
			// cannot write the root-only spool anyway.
			s.log.Warn("caller check failed", zap.String("sender", string(sender)), zap.Error(err))
			return dbus.NewError(errFailed, []any{"cannot identify the caller: " + err.Error()})
		}
		if err := s.allowed(c.uid, c.gids); err != nil {
			s.log.Warn("caller refused", zap.String("sender", string(sender)), zap.Uint32("uid", c.uid), zap.Error(err))
			return dbus.NewError(ErrAccessDenied, []any{err.Error()})
		}
		return nil
	}
}

type callerID struct {
	uid  uint32
	gids []uint32 // nil: the bus did not say
}

// callerTimeout bounds the bus's answer about a caller: D-Bus's own
// default for a method call.
const callerTimeout = 25 * time.Second

// maxCallers bounds the per-sender cache.
const maxCallers = 1024

// startCaller asks the bus who sender is, unless the answer is cached,
// and returns a function that waits for the answer.
func (s *Server) startCaller(sender string) func() (callerID, error) {
	s.callersMu.Lock()
	c, ok := s.callers[sender]
	s.callersMu.Unlock()
	if ok {
		return func() (callerID, error) { return c, nil }
	}
	// A bus that stays connected but never answers must not hold the
	// call's goroutine for good.
	ctx, cancel := context.WithTimeout(context.Background(), callerTimeout)
	call := s.conn.BusObject().GoWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, nil, sender)
	return func() (callerID, error) {
		defer cancel()
		<-call.Done
		var creds map[string]dbus.Variant
		if err := call.Store(&creds); err == nil {
			if v, ok := creds["UnixUserID"]; ok {
				if uid, ok := v.Value().(uint32); ok {
					c := callerID{uid: uid}
					if g, ok := creds["UnixGroupIDs"]; ok {
						c.gids, _ = g.Value().([]uint32)
					}
					s.remember(sender, c)
					return c, nil
				}
			}
		}
		// Older buses: the uid alone, groups from the user database.
		var uid uint32
		if err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, sender).Store(&uid); err != nil {
			return callerID{}, err
		}
		c := callerID{uid: uid}
		s.remember(sender, c)
		return c, nil
	}
}

func (s *Server) remember(sender string, c callerID) {
	s.callersMu.Lock()
	defer s.callersMu.Unlock()
	if s.callers == nil || len(s.callers) >= maxCallers {
		s.callers = map[string]callerID{}
	}
	s.callers[sender] = c
}

func (s *Server) allowed(uid uint32, gids []uint32) error {
	if uid == 0 {
		return nil
	}
	p := s.policy.Load()
	name, groups, err := s.lookupUser(uid)
	if err != nil {
		name = strconv.FormatUint(uint64(uid), 10)
	}
	if gids != nil {
		// The bus told us the caller's groups: trust them over the
		// user database.
		groups = groups[:0]
		for _, gid := range gids {
			if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
				groups = append(groups, g.Name)
			}
		}
	}
	for _, u := range p.AllowedUsers {
		if u == name || u == strconv.FormatUint(uint64(uid), 10) {
			return nil
		}
	}
	for _, g := range p.AllowedGroups {
		if slices.Contains(groups, g) {
			return nil
		}
	}
	return fmt.Errorf("user %s (uid %d) is not allowed to call certbus: run as root, or add the user to allowed_users or one of allowed_groups %v", name, uid, p.AllowedGroups)
}

func lookupUser(uid uint32) (string, []string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return "", nil, err
	}
	gids, err := u.GroupIds()
	if err != nil {
		gids = []string{u.Gid}
	}
	var names []string
	for _, gid := range gids {
		if g, err := user.LookupGroupId(gid); err == nil {
			names = append(names, g.Name)
		}
	}
	return u.Username, names, nil
}
