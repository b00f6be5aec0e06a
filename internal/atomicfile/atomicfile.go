// Package atomicfile writes certbus's own files (state, spool, hook
// scripts) so that a reader sees the old content or the new, never a torn
// one: temp file in the same directory, mode set, fsync, rename, directory
// fsync. It is not for app destinations: those go through internal/install,
// which also refuses symlinks and unsafe directories.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data and the given mode, durably.
func Write(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	if err = tmp.Chmod(mode); err == nil {
		if _, err = tmp.Write(data); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
