// Package journal appends accepted events to a bounded, fsynced log in the
// state directory, so that an event is durable before Notify returns and
// recent events can be listed after a restart. It is a log, not a database:
// only appends and a scan of the newest entries.
package journal

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certbus/certbus/internal/event"
)

// DefaultMaxSize is the size at which the journal rotates (one old file is
// kept, so the journal never takes more than twice this).
const DefaultMaxSize = 4 << 20

// Entry is one line of the journal.
type Entry struct {
	ID        string                  `json:"id"`
	Operation event.Operation         `json:"operation"`
	Time      time.Time               `json:"time"`
	Domains   map[string]EntryDomain  `json:"domains,omitempty"`
	Replay    bool                    `json:"replay,omitempty"`
	Only      []string                `json:"only,omitempty"`
	Results   map[string]EntryOutcome `json:"results,omitempty"`
}

// EntryDomain is what the journal keeps of a domain: its paths and leaf.
type EntryDomain struct {
	Paths       map[string]string `json:"paths,omitempty"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	NotAfter    time.Time         `json:"not_after,omitzero"`
}

// EntryOutcome is an app's result, journaled once the event is processed.
type EntryOutcome struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Journal is an append-only event log. It is safe for concurrent use.
type Journal struct {
	path    string
	maxSize int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating) <dir>/journal.jsonl.
func Open(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	j := &Journal{path: filepath.Join(dir, "journal.jsonl"), maxSize: DefaultMaxSize}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Journal) open() error {
	_, statErr := os.Stat(j.path)
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	size, err := repairTail(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("repair journal %s: %w", j.path, err)
	}
	if os.IsNotExist(statErr) {
		syncDir(filepath.Dir(j.path))
	}
	j.f, j.size = f, size
	return nil
}

// repairTail cuts a torn last line (a crash mid-write) so that the next
// entry starts on a line of its own instead of being glued to garbage.
func repairTail(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	// Look back for the last newline, a block at a time.
	buf := make([]byte, 4096)
	end := size
	for end > 0 {
		start := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && n == 0 {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				keep := start + int64(i) + 1
				if keep == size {
					return size, nil
				}
				return keep, truncate(f, keep)
			}
		}
		end = start
	}
	return 0, truncate(f, 0)
}

func truncate(f *os.File, n int64) error {
	if err := f.Truncate(n); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// FromEvent makes the journal entry of an event.
func FromEvent(e *event.Event) Entry {
	en := Entry{ID: e.ID, Operation: e.Operation, Time: e.Time, Replay: e.Replay, Only: e.Only}
	if len(e.Domains) > 0 {
		en.Domains = make(map[string]EntryDomain, len(e.Domains))
		for d, m := range e.Domains {
			en.Domains[d] = EntryDomain{Paths: m.Paths, Fingerprint: m.Fingerprint, NotAfter: m.NotAfter}
		}
	}
	return en
}

// Append writes one entry and fsyncs it before returning.
func (j *Journal) Append(en Entry) error { return j.append(en, true) }

func (j *Journal) append(en Entry, sync bool) error {
	line, err := json.Marshal(en)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("journal closed")
	}
	if j.size+int64(len(line)) > j.maxSize && j.size > 0 {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("sync journal: %w", err)
		}
	}
	j.size += int64(len(line))
	return nil
}

func (j *Journal) rotate() error {
	j.f.Close()
	j.f = nil
	if err := os.Rename(j.path, j.path+".1"); err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	syncDir(filepath.Dir(j.path))
	return j.open()
}

// Recent returns up to n newest entries, oldest first, from the current and
// the rotated file. Lines that do not parse (a torn last write after a
// crash) are skipped. Result entries (written by AppendResults) are merged
// into the entry they belong to.
func (j *Journal) Recent(n int) ([]Entry, error) {
	var all []Entry
	for _, p := range []string{j.path + ".1", j.path} {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var en Entry
			if json.Unmarshal(sc.Bytes(), &en) == nil && en.ID != "" {
				all = append(all, en)
			}
		}
		f.Close()
	}
	// Merge result lines (no operation) into their event.
	idx := map[string]int{}
	var out []Entry
	for _, en := range all {
		if en.Operation == "" {
			if i, ok := idx[en.ID]; ok {
				if out[i].Results == nil {
					out[i].Results = map[string]EntryOutcome{}
				}
				for k, v := range en.Results {
					out[i].Results[k] = v
				}
			}
			continue
		}
		idx[en.ID] = len(out)
		out = append(out, en)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// AppendResults journals the outcome of an event's apps. It does not
// fsync: a result lost in a crash is redone by catch-up, and the next
// event's fsync covers it.
func (j *Journal) AppendResults(id string, results map[string]EntryOutcome) error {
	return j.append(Entry{ID: id, Results: results}, false)
}

// Close closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
