package migrate

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzMigrate checks, for any input: no panic; an error is a *ParseError
// naming a line of the input; otherwise the output is the input minus
// whole lines, each of them a removed hook's or the Plinth line, every other
// byte surviving in order; a second pass removes nothing; and the diff
// deletes exactly the removed lines.
func FuzzMigrate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil && !strings.HasSuffix(name, "README") {
			f.Add(data, false)
			f.Add(data, true)
		}
	}
	for _, tc := range scanCases {
		f.Add([]byte(tc.in), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, all bool) {
		e, err := analyze(data, all)
		// An independent split: lines end after '\n'.
		lines := bytes.SplitAfter(data, []byte("\n"))
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line < 1 || pe.Line > len(lines) {
				t.Fatalf("error names line %d of %d", pe.Line, len(lines))
			}
			return
		}
		if len(e.lines) != len(lines) {
			t.Fatalf("%d lines, want %d", len(e.lines), len(lines))
		}
		inHook := make([]bool, len(lines))
		for _, h := range e.removed {
			if !strings.Contains(string(lines[h.Line-1]), strings.Trim(h.Key, `'"`)) {
				t.Fatalf("removed hook %s at line %d: %q", h.Key, h.Line, lines[h.Line-1])
			}
		}
		var want bytes.Buffer
		dropped := 0
		for i, l := range lines {
			if !e.drop[i] {
				want.Write(l)
				continue
			}
			dropped++
			inHook[i] = true
		}
		if !bytes.Equal(e.output, want.Bytes()) {
			t.Fatalf("output is not the input minus the dropped lines")
		}
		if len(e.removed) == 0 && (dropped != 0 || !bytes.Equal(e.output, data)) {
			t.Fatalf("nothing removed, yet the output differs")
		}
		for _, h := range e.kept {
			if e.drop[h.Line-1] {
				t.Fatalf("kept hook %s at line %d was dropped", h.Key, h.Line)
			}
			if all {
				t.Fatalf("--all kept %s", h.Key)
			}
		}
		for i, d := range e.drop {
			if d && e.marker && strings.TrimSpace(string(lines[i])) == plinthMarker {
				continue
			}
			if d && !inHook[i] {
				t.Fatalf("line %d dropped outside a hook", i+1)
			}
		}

		// Idempotence.
		e2, err := analyze(e.output, all)
		if err != nil {
			t.Fatalf("the output does not parse: %v", err)
		}
		if len(e2.removed) != 0 {
			t.Fatalf("a second pass removes %v", keys(e2.removed))
		}
		if len(e2.kept) != len(e.kept) {
			t.Fatalf("a second pass keeps %v, the first %v", keys(e2.kept), keys(e.kept))
		}
		for i := range e.kept {
			if e2.kept[i].Key != e.kept[i].Key || e2.kept[i].Command != e.kept[i].Command {
				t.Fatalf("a second pass reads %+v, the first %+v", e2.kept[i], e.kept[i])
			}
		}

		// The diff deletes exactly the dropped lines.
		d := unifiedDiff("a", "b", data, e.lines, e.drop)
		if (d == "") != (dropped == 0) {
			t.Fatalf("diff %q for %d dropped lines", d, dropped)
		}
		minus := 0
		for i, l := range strings.SplitAfter(d, "\n") {
			if i >= 2 && strings.HasPrefix(l, "-") {
				minus++
			}
		}
		if minus != dropped {
			t.Fatalf("diff deletes %d lines, want %d:\n%s", minus, dropped, d)
		}
	})
}
