package hooks

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/certbus/certbus/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SpoolDir is the spool's directory under state_dir.
func SpoolDir(stateDir string) string { return filepath.Join(stateDir, "spool") }

// Spooled is an event kept for the daemon to replay.
type Spooled struct {
	Operation string    `json:"operation"`
	Domains   Domains   `json:"domains"`
	Time      time.Time `json:"time"`
	// File is where it was read from (not stored).
	File string `json:"-"`
}

// MaxSpool bounds the number of spooled events: past it, the hook fails
// loudly instead of filling the disk.
const MaxSpool = 10000

// Spool writes the event atomically into <stateDir>/spool/ (0700 dir, 0600
// file) and returns the file's path. Names sort in arrival order.
func Spool(stateDir, op string, domains Domains) (string, error) {
	dir := SpoolDir(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create spool directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read spool directory: %w", err)
	}
	// Names start with the time in nanoseconds, and never before the
	// newest name already there: a clock stepped back (NTP at boot) must
	// not put this event, a post say, before the pre spooled earlier.
	seq := time.Now().UnixNano()
	events := 0
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".json") {
			continue // temporary files of hooks that died mid-write, corrupt/
		}
		events++
		if before, _, ok := strings.Cut(n, "-"); ok {
			if t, err := strconv.ParseInt(before, 10, 64); err == nil && t >= seq {
				seq = t + 1
			}
		}
	}
	if events >= MaxSpool {
		return "", fmt.Errorf("spool %s holds %d events already; start the daemon (systemctl start certbus) to replay them", dir, events)
	}
	data, err := json.Marshal(Spooled{Operation: op, Domains: domains, Time: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%020d-%s.json", seq, hex.EncodeToString(rnd[:]))
	final := filepath.Join(dir, name)
	if err := atomicfile.Write(final, data, 0o600); err != nil {
		return "", fmt.Errorf("spool event: %w", err)
	}
	return final, nil
}

// ReadSpool returns the spooled events in arrival order. A file that does
// not parse is moved to spool/corrupt/ and reported in the error list; it
// never blocks the others.
func ReadSpool(stateDir string) ([]Spooled, []error) {
	dir := SpoolDir(stateDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("read spool: %w", err)}
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []Spooled
	var errs []error
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := os.ReadFile(p)
		var s Spooled
		if err == nil {
			err = json.Unmarshal(data, &s)
		}
		if err == nil && s.Operation == "" {
			err = errors.New("no operation")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("spool file %s is corrupt (%v); moved to %s", p, err, filepath.Join(dir, "corrupt")))
			_ = os.MkdirAll(filepath.Join(dir, "corrupt"), 0o700)
			_ = os.Rename(p, filepath.Join(dir, "corrupt", n))
			continue
		}
		s.File = p
		out = append(out, s)
	}
	return out, errs
}

// SetAside moves a spool file into spool/corrupt/ (it cannot be replayed).
func SetAside(path string) {
	dir := filepath.Join(filepath.Dir(path), "corrupt")
	_ = os.MkdirAll(dir, 0o700)
	_ = os.Rename(path, filepath.Join(dir, filepath.Base(path)))
}
