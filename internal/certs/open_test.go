package certs

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The path's faults refuse the event; the daemon's own (out of
// descriptors, memory, an I/O error) do not, so the event is retried.
func TestOpenErrorBlamesThePathOnly(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOENT, unix.ENOTDIR, unix.ELOOP, unix.ENAMETOOLONG, unix.EACCES} {
		if err := openError("/x", errno); !IsInvalid(err) {
			t.Errorf("%v: %v is not an InvalidError", errno, err)
		}
	}
	for _, errno := range []unix.Errno{unix.EMFILE, unix.ENFILE, unix.ENOMEM, unix.EIO, unix.EINTR} {
		if err := openError("/x", errno); IsInvalid(err) || !strings.Contains(err.Error(), "/x") {
			t.Errorf("%v: %v is an InvalidError or does not name the path", errno, err)
		}
	}
}
