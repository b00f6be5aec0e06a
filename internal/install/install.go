// Package install writes files where a daemon reads them, atomically and
// without ever being redirected by a symlink or by a directory that someone
// other than root (or the file's own owner) can change.
//
// Every app that copies certificates goes through it. A file is written to a
// temporary name in its final directory with its final owner and mode already
// set, synced, then renamed over the final name, and the directory is synced:
// a reader sees the old file or the new one, never a torn one, and a private
// key is never readable beyond its final mode, not even for a moment.
//
// The destination path is opened one component at a time from "/" with
// O_NOFOLLOW: a symlink anywhere among the directories is refused with
// ErrUnsafe, and so is a directory that a non-root user other than the file's
// owner could change (see Write). If the final name itself is a symlink, the
// rename replaces the link; nothing is ever written through it. Missing
// directories are created, root-owned and 0755.
//
// Because of that rule nothing can be installed under /tmp or /var/tmp (they
// are world-writable); tests use installtest.Dir. The package needs root to
// set owners; it does not read certificates, choose paths or modes, or decide
// what to do after a failure: Read and Restore give the caller a rollback.
//
// A crash between creating and renaming a temporary file leaves it behind,
// named ".NAME.certbus-XXXXXXXX.tmp" next to NAME; nothing reads it.
package install

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrUnsafe is wrapped by every error that refuses a destination because a
// symlink or a directory on its path could let someone redirect the write.
var ErrUnsafe = errors.New("unsafe destination")

// File is one file to install: its absolute path, its complete content, and
// the owner and permission bits it must have once in place.
type File struct {
	Path     string
	Data     []byte
	UID, GID int
	Mode     os.FileMode
}

// Write installs f atomically: the content appears at f.Path all at once,
// already owned by f.UID:f.GID with mode f.Mode, and is durable when Write
// returns nil.
//
// f.Path must be absolute and clean, Mode only permission bits and not zero.
// Write refuses (wrapping ErrUnsafe) a symlink among the directories of f.Path
// and a directory there, "/" included, that
//   - is owned by neither root nor f.UID,
//   - is writable by others (sticky or not),
//   - is group-writable for a group that is neither root nor f.GID,
//   - is group-writable and has a POSIX ACL.
//
// The goal is that a service user can never steer a root write: it may own
// directories only on the way to files it will own itself. Missing
// directories are created root-owned with mode 0755.
//
// If f.Path exists as a symlink, the link is replaced by the file; the file
// it pointed to is left untouched. If it is a directory, Write fails. On any
// error the temporary file is removed and f.Path is unchanged.
func Write(f File) error {
	return WriteGroup([]File{f})
}

// WriteGroup installs several files, such as a private key and its
// certificate, so that the moment in which a reader could see one new and
// one old is as short as possible: it first writes, syncs and checks every
// file under a temporary name (any failure removes them all and changes
// nothing), then renames them over their final names in the order given,
// back to back, then syncs their directories.
//
// Two renames are never atomic together, so a reader racing the renames can
// still see a mismatched pair for that instant; a daemon reloaded afterwards
// never does. Callers that can should write key and certificate into one
// file instead. If a rename fails after others succeeded, the error is a
// *PartialError naming the files already installed; the caller restores
// them from its snapshots.
func WriteGroup(files []File) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := f.validate(); err != nil {
			return fmt.Errorf("install %s: %w", f.Path, err)
		}
		if seen[f.Path] {
			return fmt.Errorf("install %s: path given twice", f.Path)
		}
		seen[f.Path] = true
	}
	return writeGroup(files)
}

// PartialError is WriteGroup's error when a rename failed after others
// succeeded: the files in Installed hold their new content, the rest their
// old.
type PartialError struct {
	Installed []string
	Err       error
}

func (e *PartialError) Error() string {
	return e.Err.Error() + " (already installed: " + strings.Join(e.Installed, ", ") + ")"
}

func (e *PartialError) Unwrap() error { return e.Err }

// writeGroup is WriteGroup on files already validated; Restore uses it
// directly because a snapshot may hold a mode Write would not accept.
func writeGroup(files []File) error {
	staged := make([]*staged, 0, len(files))
	defer func() {
		for _, s := range staged {
			s.close()
		}
	}()
	removeAll := func() {
		for _, s := range staged {
			s.remove()
		}
	}
	// Directories are opened (and created) and temporary names taken one
	// file at a time, in order; the temporary files are then filled and
	// synced side by side: each sync waits on the disk, which takes them
	// together (a two-name lineage's four copies: a quarter less time
	// here, see BenchmarkWriteGroup).
	outs := make([]*os.File, 0, len(files))
	for _, f := range files {
		s, out, err := stage(f)
		if err != nil {
			for _, o := range outs {
				o.Close()
			}
			removeAll()
			return fmt.Errorf("install %s: %w", f.Path, err)
		}
		staged = append(staged, s)
		outs = append(outs, out)
	}
	errs := each(len(files), func(i int) error {
		defer outs[i].Close() // on a panic too; after the Close below, a no-op
		err := fillFile(outs[i], files[i])
		if cerr := outs[i].Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close temporary file: %w", cerr)
		}
		return err
	})
	for i, err := range errs {
		if err != nil {
			removeAll()
			return fmt.Errorf("install %s: %w", files[i].Path, err)
		}
	}
	for i, s := range staged {
		if err := unix.Renameat(s.dir, s.tmp, s.dir, s.name); err != nil {
			var done []string
			for _, d := range staged[:i] {
				done = append(done, d.path)
			}
			for _, r := range staged[i:] {
				r.remove()
			}
			err = fmt.Errorf("install %s: rename into place: %w", s.path, err)
			if len(done) > 0 {
				return &PartialError{Installed: done, Err: err}
			}
			return err
		}
		s.tmp = ""
	}
	// One sync per directory, the directories side by side.
	var dirs []int // index in staged of the first file of each directory
	synced := make(map[string]bool, len(staged))
	for i, s := range staged {
		if dir := filepath.Dir(s.path); !synced[dir] {
			synced[dir] = true
			dirs = append(dirs, i)
		}
	}
	errs = each(len(dirs), func(i int) error {
		s := staged[dirs[i]]
		return syncDir(s.dir, filepath.Dir(s.path))
	})
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("install %s: %w", staged[dirs[i]].path, err)
		}
	}
	return nil
}

// maxParallel bounds the files of a group written at once.
const maxParallel = 8

// each runs f(0) .. f(n-1), up to maxParallel at a time, and returns
// their errors once all have run; one alone runs on the caller's
// goroutine. A panic in f becomes its error: on a goroutine of its own it
// would end the daemon, where the caller's would have been recovered.
func each(n int, f func(i int) error) []error {
	errs := make([]error, n)
	call := func(i int) {
		defer func() {
			if r := recover(); r != nil {
				errs[i] = fmt.Errorf("panic: %v", r)
			}
		}()
		errs[i] = f(i)
	}
	if n == 1 {
		call(0)
		return errs
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallel)
	for i := range n {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			call(i)
		})
	}
	wg.Wait()
	return errs
}

// validate checks what does not depend on the filesystem.
func (f File) validate() error {
	if err := checkPath(f.Path); err != nil {
		return err
	}
	if f.Mode&^os.ModePerm != 0 {
		return fmt.Errorf("mode %v has more than permission bits", f.Mode)
	}
	if f.Mode == 0 {
		return errors.New("mode is not set")
	}
	if f.UID < 0 || f.GID < 0 {
		return fmt.Errorf("invalid owner %d:%d", f.UID, f.GID)
	}
	return nil
}

// checkPath accepts only absolute, clean paths to something below "/".
func checkPath(path string) error {
	if !filepath.IsAbs(path) {
		return errors.New("path is not absolute")
	}
	if filepath.Clean(path) != path {
		return fmt.Errorf("path is not clean (want %s)", filepath.Clean(path))
	}
	if path == "/" {
		return errors.New("path names the root directory")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return errors.New("path contains a NUL byte")
	}
	return nil
}

// staged is a file written under a temporary name in its final directory,
// waiting to be renamed into place.
type staged struct {
	path string // final path, for messages
	dir  int    // O_PATH descriptor of the final directory
	name string // final name in dir
	tmp  string // temporary name in dir
}

// stage opens f's directory safely and creates a temporary file in it,
// readable by root alone; fill then gives it f's owner, mode and content.
func stage(f File) (*staged, *os.File, error) {
	dirPath, name := filepath.Split(f.Path)
	dir, err := openDir(dirPath, true, trustedBy(f.UID, f.GID))
	if err != nil {
		return nil, nil, err
	}
	s := &staged{path: f.Path, dir: dir, name: name}
	if err := checkTarget(dir, f.Path, name); err != nil {
		s.close()
		return nil, nil, err
	}
	fd, err := s.createTemp()
	if err != nil {
		s.close()
		return nil, nil, err
	}
	return s, os.NewFile(uintptr(fd), filepath.Join(dirPath, s.tmp)), nil
}

// checkTarget refuses a final name that is a directory: rename would fail
// anyway, with a less helpful message.
func checkTarget(dir int, path, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("stat %s: %w", path, err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// createTemp creates a new temporary file next to the final name, readable
// only by root until fill sets its owner and mode.
func (s *staged) createTemp() (int, error) {
	fd := -1
	err := s.makeTemp(func(tmp string) error {
		var err error
		fd, err = unix.Openat(s.dir, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	return fd, err
}

// makeTemp calls create with fresh temporary names next to the final name
// until one does not exist yet, and records it in s.tmp.
func (s *staged) makeTemp(create func(tmp string) error) error {
	prefix := s.name
	if len(prefix) > 200 { // keep the temporary name under NAME_MAX
		prefix = prefix[:200]
	}
	for range 10 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("make temporary name: %w", err)
		}
		tmp := "." + prefix + ".certbus-" + hex.EncodeToString(b[:]) + ".tmp"
		err := create(tmp)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create temporary file in %s: %w", filepath.Dir(s.path), err)
		}
		s.tmp = tmp
		return nil
	}
	return fmt.Errorf("create temporary file in %s: too many name collisions", filepath.Dir(s.path))
}

// fillFile is fill; a test makes one file of a group fail.
var fillFile = fill

// fill sets owner then mode (chown may clear mode bits, so it goes first),
// and only then writes the content, so it is never readable more widely than
// f.Mode allows.
func fill(out *os.File, f File) error {
	if err := out.Chown(f.UID, f.GID); err != nil {
		return fmt.Errorf("set owner of temporary file: %w", err)
	}
	if err := out.Chmod(f.Mode); err != nil {
		return fmt.Errorf("set mode of temporary file: %w", err)
	}
	if _, err := out.Write(f.Data); err != nil {
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync temporary file: %w", err)
	}
	return nil
}

// remove deletes the temporary file, if any; it is best effort because it
// only runs on a path that already failed.
func (s *staged) remove() {
	if s.tmp != "" {
		_ = unix.Unlinkat(s.dir, s.tmp, 0)
		s.tmp = ""
	}
}

func (s *staged) close() {
	if s.dir >= 0 {
		unix.Close(s.dir)
		s.dir = -1
	}
}
