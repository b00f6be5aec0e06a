package migrate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrCertbotRunning means certbot holds the lock on its config directory,
// so renewal configs may be rewritten under our feet; try again later.
var ErrCertbotRunning = errors.New("certbot is running")

// certbotLock takes the lock every certbot process holds on its config
// directory while it runs: a POSIX record lock (fcntl F_SETLK, what
// Python's fcntl.lockf uses) on <dir>/.certbot.lock. Like certbot, it
// removes the file on release and checks after locking that the file on
// disk is still the one locked, since a releasing process may have just
// removed it. It returns the release function.
func certbotLock(dir string) (release func(), err error) {
	path := filepath.Join(dir, ".certbot.lock")
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
			f.Close()
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
				return nil, fmt.Errorf("%w: it holds %s", ErrCertbotRunning, path)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		onDisk, err1 := os.Stat(path)
		held, err2 := f.Stat()
		if err1 == nil && err2 == nil && os.SameFile(onDisk, held) {
			return func() {
				os.Remove(path)
				f.Close()
			}, nil
		}
		f.Close()
		if err1 != nil && !errors.Is(err1, os.ErrNotExist) {
			return nil, fmt.Errorf("lock %s: %w", path, err1)
		}
		if err2 != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err2)
		}
	}
}
