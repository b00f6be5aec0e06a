package install

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// checkFunc judges one directory on the way to a destination. It gets the
// directory's path (for messages), the open O_PATH descriptor that the walk
// goes on with and its stat, so what is judged is what is used.
type checkFunc func(path string, fd int, st *unix.Stat_t) error

// openDir opens dir, an absolute clean path, one component at a time from "/"
// with O_PATH|O_NOFOLLOW, so no symlink anywhere in it is followed, and
// returns an O_PATH descriptor of the last directory. check, if not nil, is
// called for "/" and for every component once it is open, before anything is
// created inside it. With create, missing components are made (0755, root
// owned); without, a missing component is reported as fs.ErrNotExist.
func openDir(dir string, create bool, check checkFunc) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	if err := checkFD(fd, "/", check); err != nil {
		unix.Close(fd)
		return -1, err
	}
	cur := "/"
	for _, name := range strings.Split(dir, "/") {
		if name == "" {
			continue
		}
		next := filepath.Join(cur, name)
		nfd, err := openComponent(fd, cur, name, create)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd, cur = nfd, next
		if err := checkFD(fd, cur, check); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// openComponent opens name inside the directory parent (whose path is
// parentPath), creating it first when asked to.
func openComponent(parent int, parentPath, name string, create bool) (int, error) {
	path := filepath.Join(parentPath, name)
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	if err == nil {
		return fd, nil
	}
	switch {
	case errors.Is(err, unix.ENOENT) && create:
		if err := makeDir(parent, parentPath, name); err != nil {
			return -1, err
		}
		fd, err = unix.Openat(parent, name, flags, 0)
		if err == nil {
			return fd, nil
		}
	case errors.Is(err, unix.ENOENT):
		return -1, fmt.Errorf("open directory %s: %w", path, fs.ErrNotExist)
	}
	// With O_DIRECTORY|O_NOFOLLOW a symlink fails as "not a directory";
	// look again without following it to say which it is.
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		if unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, fmt.Errorf("%w: %s is a symlink, which is never followed", ErrUnsafe, path)
		}
		return -1, fmt.Errorf("open directory %s: not a directory", path)
	}
	return -1, fmt.Errorf("open directory %s: %w", path, err)
}

// makeDir creates name in parent as a root-owned 0755 directory and makes
// the new entry durable. Losing a race to another creator is fine: the walk
// then opens and checks whatever is there.
func makeDir(parent int, parentPath, name string) error {
	path := filepath.Join(parentPath, name)
	err := unix.Mkdirat(parent, name, 0o755)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create directory %s: %w", path, err)
	}
	// A new directory gets the umask and, on some filesystems, the parent's
	// group (setgid parents); set both explicitly.
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new directory %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return fmt.Errorf("chown new directory %s: %w", path, err)
	}
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fmt.Errorf("chmod new directory %s: %w", path, err)
	}
	return syncDir(parent, parentPath)
}

// checkFD stats the open directory fd and hands it to check.
func checkFD(fd int, path string, check checkFunc) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("open directory %s: not a directory", path)
	}
	if check == nil {
		return nil
	}
	return check(path, fd, &st)
}

// syncDir fsyncs the directory behind the O_PATH descriptor dir (fsync
// refuses O_PATH descriptors, so it opens "." for reading first).
func syncDir(dir int, path string) error {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync directory %s: %w", path, err)
	}
	return nil
}

// trustedBy returns the check that Write applies to every directory on the
// way to a file that will belong to uid:gid.
//
// The rule protects a root write from being redirected. Whoever can change
// the entries of a directory on the path can swap a component for a
// directory of their own choosing between two writes, or plant names in it;
// so every directory must be changeable only by root or by the file's own
// owner, who gains nothing by redirecting a write of a file it will own and
// read anyway. Concretely a directory is refused when
//   - its owner is neither root nor uid (an owner can always chmod it);
//   - it is writable by others, sticky or not (/tmp, /var/tmp: anyone may
//     create names there, and a name created first by someone else is theirs);
//   - it is group-writable and its group is neither root nor gid;
//   - it is group-writable and carries a POSIX access ACL: the group bits are
//     then the ACL mask, and named users or groups may have write access that
//     the mode does not show.
func trustedBy(uid, gid int) checkFunc {
	return func(path string, fd int, st *unix.Stat_t) error {
		owner, group := int(st.Uid), int(st.Gid)
		switch {
		case owner != 0 && owner != uid:
			return fmt.Errorf("%w: directory %s is owned by uid %d, which is neither root nor the file's owner (uid %d)",
				ErrUnsafe, path, owner, uid)
		case st.Mode&unix.S_IWOTH != 0 && st.Mode&unix.S_ISVTX != 0:
			return fmt.Errorf("%w: directory %s is writable by everyone (the sticky bit does not stop others creating names in it)", ErrUnsafe, path)
		case st.Mode&unix.S_IWOTH != 0:
			return fmt.Errorf("%w: directory %s is writable by everyone", ErrUnsafe, path)
		case st.Mode&unix.S_IWGRP != 0 && group != 0 && group != gid:
			return fmt.Errorf("%w: directory %s is writable by group %d, which is neither root nor the file's group (gid %d)",
				ErrUnsafe, path, group, gid)
		}
		if st.Mode&unix.S_IWGRP != 0 {
			return checkNoACL(fd, path)
		}
		return nil
	}
}

// checkNoACL refuses the directory open as fd if it has a POSIX access ACL.
// fgetxattr refuses O_PATH descriptors, so it goes through the descriptor's
// /proc/self/fd link, which names the same open directory; without /proc
// mounted it cannot tell and refuses.
func checkNoACL(fd int, path string) error {
	_, err := unix.Getxattr(fmt.Sprintf("/proc/self/fd/%d", fd), "system.posix_acl_access", nil)
	switch {
	case err == nil:
		return fmt.Errorf("%w: directory %s is group-writable and has a POSIX ACL, which may let other users write to it",
			ErrUnsafe, path)
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return nil
	default:
		return fmt.Errorf("check ACL of directory %s: %w", path, err)
	}
}
