package install

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/certbus/certbus/internal/install/installtest"
	"golang.org/x/sys/unix"
)

const nobody = 65534

// owner returns the uid, gid and permission bits of path, not following a
// final symlink.
func owner(t *testing.T, path string) (int, int, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

func mkdir(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noTemps fails if any temporary file is left anywhere below root.
func noTemps(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".certbus-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// setACL gives uid write access to dir through a POSIX access ACL, written
// in the kernel's xattr format (version 2, then tag/perm/id entries).
func setACL(t *testing.T, dir string, uid uint32) {
	t.Helper()
	type entry struct {
		tag, perm uint16
		id        uint32
	}
	const undefined = ^uint32(0)
	entries := []entry{
		{0x01, 7, undefined}, // user::rwx
		{0x02, 7, uid},       // user:uid:rwx
		{0x04, 5, undefined}, // group::r-x
		{0x10, 7, undefined}, // mask::rwx
		{0x20, 5, undefined}, // other::r-x
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, uint32(2))
	for _, e := range entries {
		_ = binary.Write(&b, binary.LittleEndian, e)
	}
	err := unix.Setxattr(dir, "system.posix_acl_access", b.Bytes(), 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("filesystem of %s has no POSIX ACLs", dir)
	}
	if err != nil {
		t.Fatalf("set ACL on %s: %v", dir, err)
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
		file  func(root string) File
		check func(t *testing.T, root string)
	}{{
		name: "key in new directories",
		file: func(root string) File {
			return File{Path: root + "/a/b/key.pem", Data: []byte("KEY"), UID: nobody, GID: nobody, Mode: 0o600}
		},
		check: func(t *testing.T, root string) {
			for _, d := range []string{root + "/a", root + "/a/b"} {
				if uid, gid, mode := owner(t, d); uid != 0 || gid != 0 || mode != 0o755 {
					t.Errorf("%s: got %d:%d %v, want 0:0 0755", d, uid, gid, mode)
				}
			}
		},
	}, {
		name: "certificate replacing a file",
		setup: func(t *testing.T, root string) {
			writeFile(t, root+"/cert.pem", "OLD, LONGER CONTENT")
		},
		file: func(root string) File {
			return File{Path: root + "/cert.pem", Data: []byte("CERT"), UID: 0, GID: nobody, Mode: 0o644}
		},
	}, {
		name: "key 0640 with a group",
		file: func(root string) File {
			return File{Path: root + "/key.pem", Data: []byte("KEY"), UID: 0, GID: nobody, Mode: 0o640}
		},
	}, {
		name: "empty content",
		file: func(root string) File {
			return File{Path: root + "/empty", Data: nil, UID: 0, GID: 0, Mode: 0o644}
		},
	}, {
		name: "final symlink replaced, not followed",
		setup: func(t *testing.T, root string) {
			writeFile(t, root+"/victim", "VICTIM")
			if err := os.Symlink("victim", root+"/link.pem"); err != nil {
				t.Fatal(err)
			}
		},
		file: func(root string) File {
			return File{Path: root + "/link.pem", Data: []byte("CERT"), UID: 0, GID: 0, Mode: 0o644}
		},
		check: func(t *testing.T, root string) {
			if got := readFile(t, root+"/victim"); got != "VICTIM" {
				t.Errorf("symlink target was written: %q", got)
			}
			if fi, _ := os.Lstat(root + "/link.pem"); !fi.Mode().IsRegular() {
				t.Errorf("link.pem is %v, want a regular file", fi.Mode())
			}
		},
	}, {
		name: "directory owned by the file's owner",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/svc", nobody, nobody, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/svc/key.pem", Data: []byte("KEY"), UID: nobody, GID: nobody, Mode: 0o600}
		},
	}, {
		name: "directory writable by the file's group",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/grp", 0, nobody, 0o775)
		},
		file: func(root string) File {
			return File{Path: root + "/grp/key.pem", Data: []byte("KEY"), UID: 0, GID: nobody, Mode: 0o640}
		},
	}, {
		name: "directory writable by group root",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/rootgrp", 0, 0, 0o775)
		},
		file: func(root string) File {
			return File{Path: root + "/rootgrp/cert.pem", Data: []byte("CERT"), UID: nobody, GID: nobody, Mode: 0o644}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := installtest.Dir(t)
			if tt.setup != nil {
				tt.setup(t, root)
			}
			f := tt.file(root)
			if err := Write(f); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := readFile(t, f.Path); got != string(f.Data) {
				t.Errorf("content: got %q, want %q", got, f.Data)
			}
			if uid, gid, mode := owner(t, f.Path); uid != f.UID || gid != f.GID || mode != f.Mode {
				t.Errorf("got %d:%d %v, want %d:%d %v", uid, gid, mode, f.UID, f.GID, f.Mode)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
			noTemps(t, root)
		})
	}
}

func TestWriteRefused(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		file    func(root string) File
		unsafe  bool   // the error wraps ErrUnsafe
		message string // the error contains it
		check   func(t *testing.T, root string)
	}{{
		name: "symlink in a middle component",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/real", 0, 0, 0o755)
			if err := os.Symlink("real", root+"/link"); err != nil {
				t.Fatal(err)
			}
		},
		file: func(root string) File {
			return File{Path: root + "/link/sub/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "/link is a symlink",
		check: func(t *testing.T, root string) {
			if entries, _ := os.ReadDir(root + "/real"); len(entries) != 0 {
				t.Errorf("something was written through the symlink: %v", entries)
			}
		},
	}, {
		name: "symlink to a directory the service user owns",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/evil", nobody, nobody, 0o755)
			mkdir(t, root+"/tls", 0, 0, 0o755)
			if err := os.Symlink(root+"/evil", root+"/tls/example.com"); err != nil {
				t.Fatal(err)
			}
		},
		file: func(root string) File {
			return File{Path: root + "/tls/example.com/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "/tls/example.com is a symlink",
		check: func(t *testing.T, root string) {
			if entries, _ := os.ReadDir(root + "/evil"); len(entries) != 0 {
				t.Errorf("something was written through the symlink: %v", entries)
			}
		},
	}, {
		name: "directory owned by another user",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/other", nobody, nobody, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/other/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "owned by uid 65534",
	}, {
		name: "directory owned by another user, file for a third",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/other", nobody, 0, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/other/key.pem", Data: []byte("KEY"), UID: 1000, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "owned by uid 65534",
	}, {
		name: "ancestor owned by another user",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/home", nobody, nobody, 0o755)
			mkdir(t, root+"/home/tls", 0, 0, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/home/tls/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "/home is owned by uid 65534",
	}, {
		name: "missing directory below a directory owned by another user",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/other", nobody, nobody, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/other/new/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "owned by uid 65534",
		check: func(t *testing.T, root string) {
			if _, err := os.Lstat(root + "/other/new"); err == nil {
				t.Error("a directory was created inside the refused directory")
			}
		},
	}, {
		name: "group-writable directory of another group",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/grp", 0, nobody, 0o775)
		},
		file: func(root string) File {
			return File{Path: root + "/grp/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "writable by group 65534",
	}, {
		name: "world-writable directory",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/world", 0, 0, 0o777)
		},
		file: func(root string) File {
			return File{Path: root + "/world/cert.pem", Data: []byte("CERT"), UID: 0, GID: 0, Mode: 0o644}
		},
		unsafe:  true,
		message: "writable by everyone",
	}, {
		name: "sticky world-writable directory",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/tmp", 0, 0, 0o777|os.ModeSticky)
			mkdir(t, root+"/tmp/tls", 0, 0, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/tmp/tls/cert.pem", Data: []byte("CERT"), UID: 0, GID: 0, Mode: 0o644}
		},
		unsafe:  true,
		message: "sticky bit",
	}, {
		name: "group-writable directory with an ACL for another user",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/acl", 0, 0, 0o755)
			setACL(t, root+"/acl", 1000)
		},
		file: func(root string) File {
			return File{Path: root + "/acl/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		unsafe:  true,
		message: "POSIX ACL",
	}, {
		name: "final name is a directory",
		setup: func(t *testing.T, root string) {
			mkdir(t, root+"/key.pem", 0, 0, 0o755)
		},
		file: func(root string) File {
			return File{Path: root + "/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		message: "is a directory",
	}, {
		name: "file where a directory should be",
		setup: func(t *testing.T, root string) {
			writeFile(t, root+"/file", "FILE")
		},
		file: func(root string) File {
			return File{Path: root + "/file/key.pem", Data: []byte("KEY"), UID: 0, GID: 0, Mode: 0o600}
		},
		message: "not a directory",
	}, {
		name: "relative path",
		file: func(string) File {
			return File{Path: "key.pem", Data: []byte("KEY"), Mode: 0o600}
		},
		message: "not absolute",
	}, {
		name: "unclean path",
		file: func(root string) File {
			return File{Path: root + "/x/../key.pem", Data: []byte("KEY"), Mode: 0o600}
		},
		message: "not clean",
	}, {
		name: "mode not set",
		file: func(root string) File {
			return File{Path: root + "/key.pem", Data: []byte("KEY")}
		},
		message: "mode is not set",
	}, {
		name: "setuid mode",
		file: func(root string) File {
			return File{Path: root + "/key.pem", Data: []byte("KEY"), Mode: 0o755 | os.ModeSetuid}
		},
		message: "more than permission bits",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := installtest.Dir(t)
			if tt.setup != nil {
				tt.setup(t, root)
			}
			f := tt.file(root)
			err := Write(f)
			if err == nil {
				t.Fatal("Write succeeded, want an error")
			}
			if got := errors.Is(err, ErrUnsafe); got != tt.unsafe {
				t.Errorf("errors.Is(err, ErrUnsafe) = %v, want %v (err: %v)", got, tt.unsafe, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain %q", err, tt.message)
			}
			if fi, err := os.Lstat(f.Path); err == nil && fi.Mode().IsRegular() {
				t.Errorf("%s was written", f.Path)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
			noTemps(t, root)
		})
	}
}

func TestWriteGroup(t *testing.T) {
	root := installtest.Dir(t)
	files := []File{
		{Path: root + "/tls/key.pem", Data: []byte("KEY"), UID: nobody, GID: nobody, Mode: 0o600},
		{Path: root + "/tls/cert.pem", Data: []byte("CERT"), UID: 0, GID: 0, Mode: 0o644},
		{Path: root + "/other/chain.pem", Data: []byte("CHAIN"), UID: 0, GID: 0, Mode: 0o644},
	}
	if err := WriteGroup(files); err != nil {
		t.Fatalf("WriteGroup: %v", err)
	}
	for _, f := range files {
		if got := readFile(t, f.Path); got != string(f.Data) {
			t.Errorf("%s: got %q, want %q", f.Path, got, f.Data)
		}
		if uid, gid, mode := owner(t, f.Path); uid != f.UID || gid != f.GID || mode != f.Mode {
			t.Errorf("%s: got %d:%d %v, want %d:%d %v", f.Path, uid, gid, mode, f.UID, f.GID, f.Mode)
		}
	}
	noTemps(t, root)

	dup := []File{files[0], files[0]}
	if err := WriteGroup(dup); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate path: got %v, want an error saying so", err)
	}
}

// TestWriteGroupFailure checks that a group that fails changes nothing and
// leaves no temporary file, whether it fails while staging or renaming.
func TestWriteGroupFailure(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		message string
	}{{
		name: "second directory refused",
		setup: func(t *testing.T, root string) {
			if err := os.Chown(root+"/b", nobody, nobody); err != nil {
				t.Fatal(err)
			}
		},
		message: "owned by uid 65534",
	}, {
		name: "second final name is a directory",
		setup: func(t *testing.T, root string) {
			if err := os.Remove(root + "/b/cert.pem"); err != nil {
				t.Fatal(err)
			}
			mkdir(t, root+"/b/cert.pem", 0, 0, 0o755)
		},
		message: "is a directory",
	}, {
		// An immutable file cannot be replaced, even by root: the failure
		// comes at the first rename, after every file was staged.
		name: "first rename fails",
		setup: func(t *testing.T, root string) {
			out, err := exec.Command("chattr", "+i", root+"/a/key.pem").CombinedOutput()
			if err != nil {
				t.Skipf("chattr +i not supported here: %v: %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("chattr", "-i", root+"/a/key.pem").Run() })
		},
		message: "rename into place",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := installtest.Dir(t)
			mkdir(t, root+"/a", 0, 0, 0o755)
			mkdir(t, root+"/b", 0, 0, 0o755)
			writeFile(t, root+"/a/key.pem", "OLD KEY")
			writeFile(t, root+"/b/cert.pem", "OLD CERT")
			tt.setup(t, root)
			fds := openFDs(t)
			err := WriteGroup([]File{
				{Path: root + "/a/key.pem", Data: []byte("NEW KEY"), UID: 0, GID: 0, Mode: 0o600},
				{Path: root + "/b/cert.pem", Data: []byte("NEW CERT"), UID: 0, GID: 0, Mode: 0o644},
			})
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want an error containing %q", err, tt.message)
			}
			if n := openFDs(t); n != fds {
				t.Errorf("%d descriptors open after the failure, %d before", n, fds)
			}
			if got := readFile(t, root+"/a/key.pem"); got != "OLD KEY" {
				t.Errorf("first file changed to %q", got)
			}
			noTemps(t, root)
		})
	}
}

// A file of a group that cannot be written (a full disk, an I/O error) while
// the others are written beside it: nothing changes and no temporary file
// is left, whichever file it is.
func TestWriteGroupFillFailure(t *testing.T) {
	for _, tc := range []struct {
		bad   int
		panic bool
	}{{0, false}, {1, false}, {2, false}, {1, true}} {
		bad := tc.bad
		t.Run(fmt.Sprintf("file %d panic %v", bad, tc.panic), func(t *testing.T) {
			root := installtest.Dir(t)
			mkdir(t, root+"/a", 0, 0, 0o755)
			mkdir(t, root+"/b", 0, 0, 0o755)
			files := []File{
				{Path: root + "/a/key.pem", Data: []byte("NEW KEY"), Mode: 0o600},
				{Path: root + "/a/cert.pem", Data: []byte("NEW CERT"), Mode: 0o644},
				{Path: root + "/b/cert.pem", Data: []byte("NEW CERT"), Mode: 0o644},
			}
			for _, f := range files {
				writeFile(t, f.Path, "OLD")
			}
			orig := fillFile
			t.Cleanup(func() { fillFile = orig })
			fillFile = func(out *os.File, f File) error {
				if f.Path == files[bad].Path {
					if tc.panic {
						panic("no space left on device")
					}
					return errors.New("no space left on device")
				}
				return orig(out, f)
			}
			fds := openFDs(t)
			err := WriteGroup(files)
			if err == nil || !strings.Contains(err.Error(), "install "+files[bad].Path+": ") || !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("got %v, want the error of %s", err, files[bad].Path)
			}
			if n := openFDs(t); n != fds {
				t.Errorf("%d descriptors open after the failure, %d before", n, fds)
			}
			for _, f := range files {
				if got := readFile(t, f.Path); got != "OLD" {
					t.Errorf("%s changed to %q", f.Path, got)
				}
			}
			noTemps(t, root)
		})
	}
}

// TestWriteNeverTorn has readers check, while the file is replaced over and
// over, that they always see one whole version or the other.
func TestWriteNeverTorn(t *testing.T) {
	root := installtest.Dir(t)
	path := root + "/bundle.pem"
	versions := []string{strings.Repeat("A", 64<<10), strings.Repeat("B", 32<<10)}
	write := func(i int) {
		if err := Write(File{Path: path, Data: []byte(versions[i%2]), UID: 0, GID: 0, Mode: 0o644}); err != nil {
			t.Errorf("Write: %v", err)
		}
	}
	write(0)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if s := string(b); s != versions[0] && s != versions[1] {
					t.Errorf("read a torn file of %d bytes", len(b))
					return
				}
			}
		})
	}
	for i := range 200 {
		write(i)
	}
	close(done)
	wg.Wait()
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}
