// Package migrate removes the legacy per-domain hooks that older setups
// wrote into certbot's renewal configs (<letsencrypt-dir>/renewal/*.conf),
// once certbus's directory hooks do their work.
//
// A hook is legacy when its command is FreedomBox's per-domain dispatcher
// (<actions>/letsencrypt run_pre_hooks|run_renew_hooks|run_post_hooks
// --domain D [--modules ...]) or a single command calling certbus or its
// D-Bus interface. Every other hook is kept unless Options.All is set.
//
// Edits are byte-preserving: whole lines are removed (a hook's key line and
// the continuation lines of a triple-quoted value) and every other byte
// stays as it was. A file that certbot could not parse is left untouched.
//
// The package does not print; it returns a Report for the caller to show.
// It does not install the directory hooks that replace the removed ones
// (package hooks does), nor check that an app covers what a kept hook did.
package migrate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// BackupSuffix is appended to a renewal config's name for the copy of the
// original kept beside it. certbot reads only *.conf, so it ignores it.
// Only an edit writes it, so a run that changes nothing leaves an earlier
// backup alone; a later edit replaces it with the file as it was just
// before that edit.
const BackupSuffix = ".certbus-bak"

// Options says where and how to migrate.
type Options struct {
	LetsencryptDir string // certbot's config directory; renewal/ is under it
	All            bool   // remove every hook, not only legacy ones
	DryRun         bool   // compute diffs, change nothing
}

// Hook is one pre_hook, post_hook, renew_hook or deploy_hook found in a
// file's [renewalparams].
type Hook struct {
	Key     string // the key, e.g. "renew_hook"
	Command string // the command as certbot reads it (quotes removed)
	Line    int    // 1-based line of the key
	Reason  string // why it is legacy (one of the Reason constants), or ""
}

// FileResult is what happened to one renewal config. When Err is set the
// file was left untouched and Removed, Kept and Diff are empty.
type FileResult struct {
	Path          string
	Removed       []Hook
	Kept          []Hook
	MarkerRemoved bool   // the "# This file was edited by Plinth." line went too
	Diff          string // unified diff of the change, "" if none
	Backup        string // the backup written, "" in a dry run or if unchanged
	Err           error  // *ParseError for a file certbot could not parse
}

// Changed reports whether the file is (or, in a dry run, would be) edited.
func (f *FileResult) Changed() bool { return f.Diff != "" }

// Report is the outcome of a migration, one entry per *.conf file in
// name order.
type Report struct {
	RenewalDir string
	Files      []FileResult
}

// Failed returns the files that had an error.
func (r *Report) Failed() []FileResult {
	var out []FileResult
	for _, f := range r.Files {
		if f.Err != nil {
			out = append(out, f)
		}
	}
	return out
}

// edit is the planned change to one file's content.
type edit struct {
	removed, kept []Hook
	marker        bool
	output        []byte
	drop          []bool // per line
	lines         []physLine
}

// analyze plans the change to a renewal config's content. It returns a
// *ParseError when certbot could not load the content.
func analyze(data []byte, all bool) (*edit, error) {
	s, err := scan(data)
	if err != nil {
		return nil, err
	}
	e := &edit{lines: s.lines, drop: make([]bool, len(s.lines))}
	for _, h := range s.hooks {
		hook := Hook{Key: h.key, Command: h.value, Line: h.first + 1}
		if !h.list {
			hook.Reason = legacyReason(h.value)
		}
		if hook.Reason == "" && !all {
			e.kept = append(e.kept, hook)
			continue
		}
		e.removed = append(e.removed, hook)
		for i := h.first; i <= h.last; i++ {
			e.drop[i] = true
		}
	}
	if len(e.removed) > 0 && s.marker >= 0 {
		e.marker = true
		e.drop[s.marker] = true
	}
	if len(e.removed) == 0 {
		e.output = data
		return e, nil
	}
	e.output = make([]byte, 0, len(data))
	for i, l := range s.lines {
		if !e.drop[i] {
			e.output = append(e.output, data[l.start:l.end]...)
		}
	}
	return e, nil
}

// Run migrates every *.conf file in <LetsencryptDir>/renewal. The error is
// for the directory as a whole (ErrCertbotRunning when certbot holds its
// lock); per-file errors are in the Report, and a file with an error is
// never written. Unless DryRun, Run holds certbot's own lock on
// LetsencryptDir while it works, so certbot cannot run meanwhile.
func Run(opts Options) (*Report, error) {
	dir := filepath.Join(opts.LetsencryptDir, "renewal")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read renewal configs: %w", err)
	}
	r := &Report{RenewalDir: dir}
	var names []string
	for _, ent := range entries {
		// certbot globs "*.conf", which skips dot files.
		if n := ent.Name(); strings.HasSuffix(n, ".conf") && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if !opts.DryRun && len(names) > 0 {
		release, err := certbotLock(opts.LetsencryptDir)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	for _, n := range names {
		r.Files = append(r.Files, migrateFile(filepath.Join(dir, n), opts))
	}
	return r, nil
}

func migrateFile(path string, opts Options) FileResult {
	res := FileResult{Path: path}
	fi, data, err := readRegular(path)
	if err != nil {
		res.Err = err
		return res
	}
	e, err := analyze(data, opts.All)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Path = path
		}
		res.Err = err
		return res
	}
	if len(e.removed) > 0 {
		res.Diff = unifiedDiff(path, path, data, e.lines, e.drop)
	}
	if opts.DryRun || len(e.removed) == 0 {
		res.Removed, res.Kept, res.MarkerRemoved = e.removed, e.kept, e.marker
		return res
	}
	backup := path + BackupSuffix
	if err := writeLike(backup, data, fi); err != nil {
		return FileResult{Path: path, Err: fmt.Errorf("back up %s: %w", path, err)}
	}
	if err := writeLike(path, e.output, fi); err != nil {
		return FileResult{Path: path, Err: fmt.Errorf("rewrite %s: %w", path, err)}
	}
	res.Removed, res.Kept, res.MarkerRemoved, res.Backup = e.removed, e.kept, e.marker, backup
	return res
}

// readRegular reads path if it is a regular file, without following a
// symlink or blocking on a FIFO that someone named *.conf.
func readRegular(path string) (fs.FileInfo, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, fmt.Errorf("%s: not a regular file (a symlink); migrate edits only regular files", path)
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file (%s); migrate edits only regular files", path, fileKind(fi.Mode()))
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return fi, data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// writeLike atomically replaces path with data, giving it the mode and
// owner of like: a temporary file in the same directory, with its final
// owner and mode set before any data goes in, synced, then renamed over
// path, and the directory synced. The temporary name does not end in
// ".conf", so certbot never reads a leftover one.
func writeLike(path string, data []byte, like fs.FileInfo) (err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+".certbus-tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if st, ok := like.Sys().(*syscall.Stat_t); ok {
		if mine, ok := statOf(f); !ok || mine.Uid != st.Uid || mine.Gid != st.Gid {
			if err = f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	// After chown, which may clear set-id bits.
	if err = f.Chmod(like.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // renamed; the directory sync is best effort
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

func statOf(f *os.File) (*syscall.Stat_t, bool) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}
