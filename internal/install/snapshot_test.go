package install

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/certbus/certbus/internal/install/installtest"
	"golang.org/x/sys/unix"
)

// TestRestore reads a path, installs something new over it, restores the
// snapshot and checks the path is as it was.
func TestRestore(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
		path  string
		want  func(t *testing.T, root string, s Snapshot)
	}{{
		name: "regular file",
		setup: func(t *testing.T, root string) {
			writeFile(t, root+"/key.pem", "OLD KEY")
			if err := os.Chown(root+"/key.pem", nobody, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(root+"/key.pem", 0o640); err != nil {
				t.Fatal(err)
			}
		},
		path: "/key.pem",
		want: func(t *testing.T, root string, s Snapshot) {
			if !s.Exists || string(s.Data) != "OLD KEY" || s.UID != nobody || s.GID != 0 || s.Mode != 0o640 || s.Symlink != "" {
				t.Errorf("snapshot: %+v", s)
			}
			if got := readFile(t, root+"/key.pem"); got != "OLD KEY" {
				t.Errorf("content: got %q", got)
			}
			if uid, gid, mode := owner(t, root+"/key.pem"); uid != nobody || gid != 0 || mode != 0o640 {
				t.Errorf("got %d:%d %v, want 65534:0 0640", uid, gid, mode)
			}
		},
	}, {
		name: "file that did not exist",
		path: "/new.pem",
		want: func(t *testing.T, root string, s Snapshot) {
			if s.Exists {
				t.Errorf("snapshot: %+v", s)
			}
			if _, err := os.Lstat(root + "/new.pem"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file still there: %v", err)
			}
		},
	}, {
		name: "directory that did not exist",
		path: "/missing/dir/new.pem",
		want: func(t *testing.T, root string, s Snapshot) {
			if s.Exists {
				t.Errorf("snapshot: %+v", s)
			}
			if _, err := os.Lstat(root + "/missing/dir/new.pem"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file still there: %v", err)
			}
		},
	}, {
		name: "symlink",
		setup: func(t *testing.T, root string) {
			writeFile(t, root+"/victim", "VICTIM")
			if err := os.Symlink("victim", root+"/link.pem"); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(root+"/link.pem", nobody, nobody); err != nil {
				t.Fatal(err)
			}
		},
		path: "/link.pem",
		want: func(t *testing.T, root string, s Snapshot) {
			if !s.Exists || s.Symlink != "victim" || s.Data != nil || s.UID != nobody {
				t.Errorf("snapshot: %+v", s)
			}
			target, err := os.Readlink(root + "/link.pem")
			if err != nil || target != "victim" {
				t.Errorf("readlink: %q, %v", target, err)
			}
			if uid, gid, _ := owner(t, root+"/link.pem"); uid != nobody || gid != nobody {
				t.Errorf("link owner %d:%d, want 65534:65534", uid, gid)
			}
			if got := readFile(t, root+"/victim"); got != "VICTIM" {
				t.Errorf("symlink target changed: %q", got)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := installtest.Dir(t)
			if tt.setup != nil {
				tt.setup(t, root)
			}
			path := root + tt.path
			s, err := Read(path)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if err := Write(File{Path: path, Data: []byte("NEW"), UID: 0, GID: 0, Mode: 0o600}); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if err := Restore(s); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			tt.want(t, root, s)
			noTemps(t, root)
		})
	}
}

func TestReadRefused(t *testing.T) {
	root := installtest.Dir(t)
	mkdir(t, root+"/real", 0, 0, 0o755)
	writeFile(t, root+"/real/key.pem", "KEY")
	if err := os.Symlink("real", root+"/link"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(root+"/fifo", 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, message string
		unsafe              bool
	}{
		{name: "symlink in a middle component", path: "/link/key.pem", message: "is a symlink", unsafe: true},
		{name: "fifo", path: "/fifo", message: "not a regular file"},
		{name: "directory", path: "/real", message: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(root + tt.path)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.message)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.message)
			}
			if errors.Is(err, ErrUnsafe) != tt.unsafe {
				t.Errorf("errors.Is(err, ErrUnsafe) = %v, want %v", !tt.unsafe, tt.unsafe)
			}
		})
	}
}

// TestRestoreRefused checks that Restore applies Write's rules: it never
// writes into a directory another user took over since the snapshot.
func TestRestoreRefused(t *testing.T) {
	root := installtest.Dir(t)
	mkdir(t, root+"/tls", 0, 0, 0o755)
	writeFile(t, root+"/tls/key.pem", "OLD KEY")
	s, err := Read(root + "/tls/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root+"/tls", nobody, nobody); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root+"/tls/key.pem", "PLANTED")
	if err := Restore(s); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Restore: got %v, want ErrUnsafe", err)
	}
	if got := readFile(t, root+"/tls/key.pem"); got != "PLANTED" {
		t.Errorf("file changed to %q", got)
	}
}
