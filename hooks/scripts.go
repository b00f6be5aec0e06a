package hooks

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/certbus/certbus/internal/atomicfile"
)

// ScriptName is the file certbus writes in each renewal-hooks directory.
// "50-" leaves room before and after it in certbot's name order.
const ScriptName = "50-certbus"

// scriptMarker identifies a script certbus wrote (and may rewrite).
const scriptMarker = "# Written by `certbus install-hooks`"

// HookBinary is the lean hook command installed beside certbus
// (cmd/certbus-hook): `certbus-hook KIND` is `certbus hook KIND` at a
// fraction of the start-up cost.
const HookBinary = "certbus-hook"

// HookEnv is the environment the hook scripts give certbus-hook (see
// Script).
const HookEnv = "GOMAXPROCS=1"

// Script is the content of the hook script for kind. It runs certbus-hook
// from binary's directory when that is there, else `binary hook kind`, so a
// host with only the certbus binary (go install) still delivers.
//
// certbus-hook runs with GOMAXPROCS=1: it is one goroutine making one call,
// and with a second P the Go runtime starts two more threads while it
// initialises. One P took 3-5% off the script's wall time, side by side
// (bench/RESULTS.md). The runtime reads the variable before any of the
// program's code runs, so only the caller can set it.
func Script(binary, kind string) []byte {
	q := shellQuote(binary)
	lean := shellQuote(filepath.Join(filepath.Dir(binary), HookBinary))
	return []byte(fmt.Sprintf("#!/bin/sh\n%s; tells the certbus daemon about certbot's %s hook.\n"+
		"# Environment (RENEWED_LINEAGE, RENEWED_DOMAINS, CERTBUS_BUS, CERTBUS_CONFIG) passes through.\n"+
		"# certbus removed but this script kept (a conffile after apt remove): nothing to do.\n"+
		"[ -x %s ] || exit 0\n"+
		"[ -x %s ] && %s exec %s %s\n"+
		"exec %s hook %s\n",
		scriptMarker, kind, q, lean, HookEnv, lean, kind, q, kind))
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ScriptResult says what InstallScripts did with one file.
type ScriptResult struct {
	Path   string
	Action string // "written", "unchanged", "kept (not ours; use --force)"
}

// InstallScripts writes renewal-hooks/{pre,post,deploy}/50-certbus under
// letsencryptDir, each exec'ing binary. It is idempotent; a file there that
// certbus did not write is left alone unless force.
func InstallScripts(letsencryptDir, binary string, force bool) ([]ScriptResult, error) {
	if !filepath.IsAbs(binary) {
		return nil, fmt.Errorf("binary path %q is not absolute", binary)
	}
	var out []ScriptResult
	for _, kind := range []string{"pre", "post", "deploy"} {
		dir := filepath.Join(letsencryptDir, "renewal-hooks", kind)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return out, fmt.Errorf("create %s: %w", dir, err)
		}
		p := filepath.Join(dir, ScriptName)
		want := Script(binary, kind)
		old, err := os.ReadFile(p)
		switch {
		case err == nil && bytes.Equal(old, want):
			out = append(out, ScriptResult{p, "unchanged"})
			continue
		case err == nil && !bytes.Contains(old, []byte(scriptMarker)) && !force:
			out = append(out, ScriptResult{p, "kept (not written by certbus; use --force to replace)"})
			continue
		case err != nil && !os.IsNotExist(err):
			return out, fmt.Errorf("read %s: %w", p, err)
		}
		if err := writeExecutable(p, want); err != nil {
			return out, err
		}
		out = append(out, ScriptResult{p, "written"})
	}
	return out, nil
}

func writeExecutable(p string, data []byte) error {
	if err := atomicfile.Write(p, data, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
