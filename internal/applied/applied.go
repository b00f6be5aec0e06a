// Package applied remembers, per app and domain, which certificate the app
// last applied successfully (installed and, where it reloads, reloaded and
// verified). The daemon compares it with the lineages at start to catch up
// on renewals it missed, and status reports it. One JSON file, written
// atomically after every change; changes that arrive while it is being
// written share the next write (group commit), so a thousand apps reloading
// at once cost a few writes of the file rather than a thousand.
package applied

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certbus/certbus/internal/atomicfile"
)

// Record is what an app applied for a domain.
type Record struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	Lineage     string    `json:"lineage,omitempty"`
	Time        time.Time `json:"time"`
}

// Store is the file <state_dir>/applied.json. Safe for concurrent use.
type Store struct {
	path string
	mu   sync.Mutex
	m    map[string]map[string]Record // app -> domain -> record

	// Group commit: gen counts changes, saved is the last gen on disk;
	// one caller at a time writes (saving) while the others wait on done.
	gen, saved uint64
	saving     bool
	done       *sync.Cond
	writes     int // files written, for tests
}

// Open loads the store; a missing file is an empty store. A corrupt file is
// an error naming it: catch-up would otherwise redo everything silently.
func Open(stateDir string) (*Store, error) {
	s := &Store{path: filepath.Join(stateDir, "applied.json"), m: map[string]map[string]Record{}}
	s.done = sync.NewCond(&s.mu)
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read applied state: %w", err)
	}
	err = json.Unmarshal(data, &s.m)
	if err == nil && s.m == nil {
		err = errors.New("null, not an object")
	}
	if err != nil {
		return nil, fmt.Errorf("applied state %s is corrupt (%v): move it aside to let catch-up redeploy everything", s.path, err)
	}
	return s, nil
}

// Get returns the record of app for domain.
func (s *Store) Get(app, domain string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[app][domain]
	return r, ok
}

// Set records and persists what app applied for domain.
func (s *Store) Set(app, domain string, r Record) error {
	return s.SetMany(app, map[string]Record{domain: r})
}

// SetMany records what app applied for several domains and returns once
// that is on disk (a reload covers every domain of a renewal run at once).
func (s *Store) SetMany(app string, recs map[string]Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[app] == nil {
		s.m[app] = map[string]Record{}
	}
	changed := false
	for d, r := range recs {
		if old, ok := s.m[app][d]; ok && old.Fingerprint == r.Fingerprint {
			continue
		}
		s.m[app][d] = r
		changed = true
	}
	if changed {
		s.gen++
	}
	// Unchanged still waits for a write under way (or failed) that holds
	// the same records: they are not on disk yet.
	mine := s.gen
	for s.saved < mine {
		if s.saving {
			s.done.Wait()
			continue
		}
		// Write everything changed so far, this change and those that
		// came while the previous write ran; callers arriving during
		// this one wait for the next.
		s.saving = true
		upTo := s.gen
		data, err := json.Marshal(s.m)
		if err == nil {
			s.mu.Unlock()
			err = s.write(data)
			s.mu.Lock()
		}
		s.saving = false
		if err == nil {
			s.saved = upTo
			s.writes++
		}
		s.done.Broadcast()
		if err != nil {
			// The waiters retry, each reporting its own failure.
			return err
		}
	}
	return nil
}

// All returns a copy of every record.
func (s *Store) All() map[string]map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]Record, len(s.m))
	for a, ds := range s.m {
		out[a] = make(map[string]Record, len(ds))
		for d, r := range ds {
			out[a][d] = r
		}
	}
	return out
}

func (s *Store) write(data []byte) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("save applied state: %w", err)
	}
	return nil
}
