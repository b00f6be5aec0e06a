package install

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSnapshot bounds what Read loads into memory. Certificates, keys and
// bundles are a few kilobytes; anything near this is not one.
const maxSnapshot = 8 << 20

// Snapshot is what a destination path held at one moment, enough for Restore
// to put it back: nothing (Exists false), a regular file (Data, owner, and
// the permission bits in Mode), or a symlink (Symlink is its target, its
// owner is kept, Data and Mode are empty).
type Snapshot struct {
	Path     string
	Exists   bool
	Data     []byte
	UID, GID int
	Mode     os.FileMode
	Symlink  string
}

// Read records what path holds now, for a later Restore. It walks the
// directories like Write does, refusing a symlink among them, but creates
// nothing and does not judge their owners: reading cannot be redirected into
// harm, and the write that follows applies the rule. A missing file or
// directory gives a Snapshot with Exists false. A symlink as the final name is
// recorded, not followed. Anything but a regular file or a symlink, or a file
// over 8 MiB, is an error.
func Read(path string) (Snapshot, error) {
	snap := Snapshot{Path: path}
	if err := checkPath(path); err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	dirPath, name := filepath.Split(path)
	dir, err := openDir(dirPath, false, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return snap, nil
	}
	if err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	defer unix.Close(dir)

	var st unix.Stat_t
	err = unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return snap, nil
	}
	if err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := readlinkat(dir, name)
		if err != nil {
			return snap, fmt.Errorf("read symlink %s: %w", path, err)
		}
		snap.Exists, snap.Symlink, snap.UID, snap.GID = true, target, int(st.Uid), int(st.Gid)
		return snap, nil
	case unix.S_IFREG:
	default:
		return snap, fmt.Errorf("read %s: not a regular file", path)
	}

	// O_NONBLOCK: if a FIFO was swapped in since the stat, do not hang on it.
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return snap, fmt.Errorf("read %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSnapshot+1))
	if err != nil {
		return snap, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxSnapshot {
		return snap, fmt.Errorf("read %s: larger than %d bytes", path, maxSnapshot)
	}
	snap.Exists, snap.Data = true, data
	snap.UID, snap.GID, snap.Mode = int(st.Uid), int(st.Gid), os.FileMode(st.Mode)&os.ModePerm
	return snap, nil
}

// readlinkat returns the target of the symlink name in dir.
func readlinkat(dir int, name string) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", errors.New("target too long")
}

// Restore puts s.Path back the way Read found it, atomically and under the
// same rules as Write, the snapshot's owner standing for the file's owner: a
// file gets its old bytes, owner and mode; a symlink is recreated (a new link
// renamed over the name); a path that did not exist is removed, if it is not
// a directory, with the directories judged for the owner of the file being
// removed. Directories that Write created are left in place.
func Restore(s Snapshot) error {
	if err := checkPath(s.Path); err != nil {
		return fmt.Errorf("restore %s: %w", s.Path, err)
	}
	switch {
	case !s.Exists:
		return remove(s.Path)
	case s.Symlink != "":
		return restoreLink(s)
	}
	if s.UID < 0 || s.GID < 0 {
		return fmt.Errorf("restore %s: invalid owner %d:%d", s.Path, s.UID, s.GID)
	}
	f := File{Path: s.Path, Data: s.Data, UID: s.UID, GID: s.GID, Mode: s.Mode & os.ModePerm}
	if err := writeGroup([]File{f}); err != nil {
		return fmt.Errorf("restore previous file: %w", err)
	}
	return nil
}

// remove deletes path, a file Write may have created, so that it is absent
// again.
func remove(path string) error {
	cur, err := Read(path)
	if err != nil {
		return fmt.Errorf("restore absence of %s: %w", path, err)
	}
	if !cur.Exists {
		return nil
	}
	dirPath, name := filepath.Split(path)
	dir, err := openDir(dirPath, false, trustedBy(cur.UID, cur.GID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore absence of %s: %w", path, err)
	}
	defer unix.Close(dir)
	err = unix.Unlinkat(dir, name, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore absence of %s: remove: %w", path, err)
	}
	if err := syncDir(dir, filepath.Dir(path)); err != nil {
		return fmt.Errorf("restore absence of %s: %w", path, err)
	}
	return nil
}

// restoreLink recreates the symlink s recorded: a new link under a
// temporary name, owned like the old one, renamed over the final name.
func restoreLink(s Snapshot) error {
	dirPath, name := filepath.Split(s.Path)
	dir, err := openDir(dirPath, true, trustedBy(s.UID, s.GID))
	if err != nil {
		return fmt.Errorf("restore symlink %s: %w", s.Path, err)
	}
	st := &staged{path: s.Path, dir: dir, name: name}
	defer st.close()
	if err := checkTarget(dir, s.Path, name); err != nil {
		return fmt.Errorf("restore symlink %s: %w", s.Path, err)
	}
	err = st.makeTemp(func(tmp string) error { return unix.Symlinkat(s.Symlink, dir, tmp) })
	if err != nil {
		return fmt.Errorf("restore symlink %s: %w", s.Path, err)
	}
	if err := unix.Fchownat(dir, st.tmp, s.UID, s.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		st.remove()
		return fmt.Errorf("restore symlink %s: set owner: %w", s.Path, err)
	}
	if err := unix.Renameat(dir, st.tmp, dir, name); err != nil {
		st.remove()
		return fmt.Errorf("restore symlink %s: rename into place: %w", s.Path, err)
	}
	if err := syncDir(dir, filepath.Dir(s.Path)); err != nil {
		return fmt.Errorf("restore symlink %s: %w", s.Path, err)
	}
	return nil
}
