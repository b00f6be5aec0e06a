// Package journal appends accepted events to a bounded, synced log in the
// state directory, so that an event is durable before Notify returns and
// recent events can be listed after a restart. It is a log, not a database:
// only appends and a scan of the newest entries.
//
// The file is JSON lines followed by space padding: it grows 64 KiB at a
// time, and an entry overwrites padding and is made durable with
// fdatasync. fdatasync would make an appended entry durable too, but with
// the file's size unchanged it has the entry's block alone to write, not
// the inode as well (ext4 without a journal) nor a journal commit (ext4
// with one): 40% less per event here. JSON tools skip the padding as
// whitespace; a clean Close cuts it off, and a torn last line left by a
// crash is padded over when the daemon opens the journal again. Only the
// daemon opens it for writing; others read it with ReadRecent.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certbus/certbus/internal/event"
)

// DefaultMaxSize is the size at which the journal rotates (one old file is
// kept, so the journal never takes more than twice this).
const DefaultMaxSize = 4 << 20

// growStep is how much padding the file gains when an entry does not fit.
const growStep = 64 << 10

// pad is the padding byte: whitespace to JSON. The end of the entries is
// found from the end of the file: the last byte that is not padding, then
// the newline that ends its line.
const pad = ' '

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

	lock *os.File // holds the writer's lock

	mu   sync.Mutex
	f    *os.File
	size int64 // end of the entries; the next one is written here
	end  int64 // end of the file: size up to end is padding
}

// Open opens (creating) <dir>/journal.jsonl.
func Open(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	j := &Journal{path: filepath.Join(dir, "journal.jsonl"), maxSize: DefaultMaxSize}
	// One writer: a second one would write over the first's entries
	// (each keeps its own end). The lock is on a file of its own, never
	// renamed, held from Open to Close (rotation keeps it).
	lockPath := filepath.Join(dir, "journal.lock")
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal lock: %w", err)
	}
	if err := flock(lock); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("journal %s is in use by another process (%s is locked): is another certbus serve running with the same state_dir? (`systemctl status certbus`; give a second daemon its own state_dir)", j.path, lockPath)
		}
		return nil, fmt.Errorf("lock journal %s: %w", lockPath, err)
	}
	j.lock = lock
	if err := j.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return j, nil
}

func (j *Journal) open() error {
	_, statErr := os.Stat(j.path)
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	size, end, err := repairTail(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("repair journal %s: %w", j.path, err)
	}
	if os.IsNotExist(statErr) {
		syncDir(filepath.Dir(j.path))
	}
	j.f, j.size, j.end = f, size, end
	return nil
}

// flock takes f's exclusive lock without waiting.
func flock(f *os.File) error {
	for {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EINTR {
			return err
		}
	}
}

// repairTail finds where the entries end, before the padding, and pads
// over a torn last line (a crash mid-write) so that the next entry starts
// on a line of its own instead of being glued to garbage. It returns that
// end and the file's size.
func repairTail(f *os.File) (size, end int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	end = st.Size()
	// Look back, a block at a time, for the last byte that is not
	// padding, then for the last newline at or before it.
	buf := make([]byte, 4096)
	last := int64(-1) // the last byte that is not padding
	for at := end; at > 0; {
		start := max(at-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:at-start], start)
		if err != nil && err != io.EOF {
			return 0, 0, err
		}
		b := buf[:n]
		if last < 0 {
			i := len(b) - 1
			for i >= 0 && b[i] == pad {
				i--
			}
			if i >= 0 {
				last = start + int64(i)
				b = b[:i+1]
			}
		}
		if last >= 0 {
			if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
				size = start + int64(i) + 1
				break
			}
		}
		at = start
	}
	if size <= last { // a torn line (or garbage) from size to last
		if err := padRange(f, size, last+1); err != nil {
			return 0, 0, err
		}
	}
	return size, end, nil
}

// padRange overwrites [from, to) with padding and syncs it.
func padRange(f *os.File, from, to int64) error {
	if _, err := f.WriteAt(padding(to-from), from); err != nil {
		return err
	}
	return fdatasync(f)
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

// Append writes one entry and syncs it before returning.
func (j *Journal) Append(en Entry) error { return j.append(en, true) }

func (j *Journal) append(en Entry, sync bool) error {
	line, err := json.Marshal(en)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lock == nil {
		return fmt.Errorf("journal closed")
	}
	if j.f == nil {
		// A rotation failed (its rename or the reopen): try again
		// now, so that events are refused only while the disk or
		// the state directory is at fault, not until a restart.
		if err := j.open(); err != nil {
			return err
		}
	}
	if j.size+int64(len(line)) > j.maxSize && j.size > 0 {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	grow := j.size+int64(len(line)) > j.end
	if grow {
		// Padding first, so that the entry lands inside the file. A
		// step does not take the file past maxSize, unless the entry
		// alone does.
		end := (j.size + int64(len(line)) + growStep - 1) / growStep * growStep
		end = min(end, max(j.maxSize, j.size+int64(len(line))))
		if _, err := j.f.WriteAt(padding(end-j.end), j.end); err != nil {
			return fmt.Errorf("write journal: %w", err)
		}
		j.end = end
	}
	err = nil
	if _, werr := j.f.WriteAt(line, j.size); werr != nil {
		err = fmt.Errorf("write journal: %w", werr)
	} else if sync || grow {
		if serr := fdatasync(j.f); serr != nil {
			err = fmt.Errorf("sync journal: %w", serr)
		}
	}
	if err != nil {
		// The next entry goes here: pad over whatever part of this one
		// reached the file, so that no fragment of it is left behind a
		// shorter one (best effort: the disk is failing already).
		_, _ = j.f.WriteAt(padding(int64(len(line))), j.size)
		return err
	}
	j.size += int64(len(line))
	return nil
}

// padding is n bytes of padding.
func padding(n int64) []byte { return bytes.Repeat([]byte{pad}, int(n)) }

// fdatasync is fdatasync(2), retried when a signal interrupts it. It makes
// the written data durable, and the file's size too when that changed.
func fdatasync(f *os.File) error {
	for {
		if err := unix.Fdatasync(int(f.Fd())); err != unix.EINTR {
			return err
		}
	}
}

// trim cuts the padding off, so that a journal at rest is plain JSON lines.
func (j *Journal) trim() error {
	if j.end == j.size {
		return nil
	}
	if err := j.f.Truncate(j.size); err != nil {
		return err
	}
	j.end = j.size
	return j.f.Sync()
}

func (j *Journal) rotate() error {
	err := j.trim()
	j.f.Close()
	j.f = nil
	if err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
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
func (j *Journal) Recent(n int) ([]Entry, error) { return readRecent(j.path, n) }

// ReadRecent is Recent for a reader beside the daemon (`certbus status`):
// it opens the files read-only and never repairs, pads or trims them, so
// that it cannot disturb the daemon writing them. A journal not written
// yet has no entries.
func ReadRecent(dir string, n int) ([]Entry, error) {
	return readRecent(filepath.Join(dir, "journal.jsonl"), n)
}

func readRecent(path string, n int) ([]Entry, error) {
	// The current file is opened before the rotated one: a rotation in
	// between then shows one file under both names (read once), where
	// the other order would miss the entries it moved.
	cur, err := openExisting(path)
	if err != nil {
		return nil, err
	}
	old, err := openExisting(path + ".1")
	if err != nil {
		if cur != nil {
			cur.Close()
		}
		return nil, err
	}
	if old != nil && cur != nil && sameFile(old, cur) {
		old.Close()
		old = nil
	}
	var all []Entry
	for _, f := range []*os.File{old, cur} {
		if f == nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := bytes.TrimLeft(sc.Bytes(), string(pad))
			if len(line) == 0 {
				continue // the padding
			}
			var en Entry
			if json.Unmarshal(line, &en) == nil && en.ID != "" {
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

// openExisting opens p for reading; nil when it does not exist.
func openExisting(p string) (*os.File, error) {
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return f, nil
}

func sameFile(a, b *os.File) bool {
	sa, erra := a.Stat()
	sb, errb := b.Stat()
	return erra == nil && errb == nil && os.SameFile(sa, sb)
}

// AppendResults journals the outcome of an event's apps. It does not
// sync: a result lost in a crash is redone by catch-up, and the next
// event's sync covers it.
func (j *Journal) AppendResults(id string, results map[string]EntryOutcome) error {
	return j.append(Entry{ID: id, Results: results}, false)
}

// Close cuts the padding off and closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lock != nil {
		defer func() { j.lock.Close(); j.lock = nil }()
	}
	if j.f == nil {
		return nil
	}
	err := j.trim()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}
