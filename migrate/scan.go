package migrate

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// This file reads a certbot renewal config the way certbot does: certbot
// loads it with Python's ConfigObj 5 (list values on, UTF-8), so the grammar
// below is ConfigObj's, restated as Go regular expressions. Go's regexp has
// the same leftmost-first submatch semantics as Python's re, so lazy
// quantifiers and alternations pick the same captures, in linear time.
//
// The scanner never rebuilds text: it reports which physical lines hold a
// hook, and the caller drops exactly those lines.

// pyWS is the set Python's \s and str.isspace use for str patterns.
const pyWS = `\t\n\v\f\r \x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}`

// lazy compiles a pattern on first use: the certbus binary is also the
// hook certbot runs, and its start-up should not pay for migrate's regexps.
func lazy(re string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return build(re) })
}

// build compiles re after expanding {ws} (Python's whitespace class),
// {nws} (its complement) and {wsc} (its members, for use inside a class).
func build(re string) *regexp.Regexp {
	re = strings.NewReplacer("{ws}", "["+pyWS+"]", "{nws}", "[^"+pyWS+"]", "{wsc}", pyWS).Replace(re)
	return regexp.MustCompile(re)
}

var (
	// A section header: indentation, one or more '[', a name (quoted, or
	// unquoted starting with a non-space), as many ']', an optional comment.
	reSection = lazy(`^({ws}*)((?:\[{ws}*)+)("{ws}*{nws}.*?{ws}*"|'{ws}*{nws}.*?{ws}*'|[^'"{wsc}].*?)((?:{ws}*\])+){ws}*(#.*)?$`)

	// A key line: indentation, a key (quoted, or unquoted not starting with
	// '='), '=', then everything else as the raw value.
	reKey = lazy(`^({ws}*)(".*?"|'.*?'|[^'"=].*?){ws}*={ws}*(.*)$`)

	// A raw value with list values on: zero or more "item," then an optional
	// last item, or a lone comma (the empty list); then an optional comment.
	// ConfigObj guards its empty last item with a look-behind for ',', which
	// Go lacks; an empty last item after a comma means "no item" in both.
	reValue = lazy(`^(?:((?:(?:".*?"|'.*?'|[^'",#][^,#]*?){ws}*,{ws}*)*)(".*?"|'.*?'|[^'",#{wsc}][^,]*?|)?|(,)){ws}*(#.*)?$`)

	// One "item," of a list, for splitting the list part of a value.
	reListItem = lazy(`(".*?"|'.*?'|[^'",#]?.*?){ws}*,{ws}*`)

	// Triple-quoted values: opened and closed on one line, or closed on a
	// later line; either way only a comment may follow the closing quotes.
	reTriple = sync.OnceValue(func() map[string][2]*regexp.Regexp {
		return map[string][2]*regexp.Regexp{
			`'''`: {build(`^'''(.*?)'''{ws}*(#.*)?$`), build(`^(.*?)'''{ws}*(#.*)?$`)},
			`"""`: {build(`^"""(.*?)"""{ws}*(#.*)?$`), build(`^(.*?)"""{ws}*(#.*)?$`)},
		}
	})
)

// plinthMarker is the first line FreedomBox (Plinth) put into every renewal
// config it edited.
const plinthMarker = "# This file was edited by Plinth."

// hookKeys are the [renewalparams] keys certbot runs as hooks. certbot saves
// the deploy hook as renew_hook; newer releases also read deploy_hook.
var hookKeys = map[string]bool{"pre_hook": true, "post_hook": true, "renew_hook": true, "deploy_hook": true}

// ParseError is a renewal config certbot could not load (or that migrate
// will not edit); the file is left untouched.
type ParseError struct {
	Path string // empty when the content did not come from a file
	Line int    // 1-based
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// physLine is one line of the file: data[start:end] including its '\n',
// and text, what ConfigObj sees (no trailing '\r' or '\n', no BOM).
type physLine struct {
	start, end int
	text       string
}

// hookEntry is a hook key found directly in [renewalparams].
type hookEntry struct {
	key         string
	value       string // as certbot reads it; list items joined with ","
	list        bool   // the value is a list (certbot cannot run it)
	first, last int    // 0-based line indices the key and its value span
}

type scanResult struct {
	lines  []physLine
	hooks  []hookEntry
	marker int // line index of plinthMarker in the initial comment, or -1
}

// section is one [section] while scanning; names holds its keys and
// subsections, which share one namespace in ConfigObj.
type section struct {
	name   string
	depth  int
	parent *section
	names  map[string]bool
}

func splitLines(data []byte) []physLine {
	var lines []physLine
	for start := 0; start < len(data); {
		end := len(data)
		if i := bytes.IndexByte(data[start:], '\n'); i >= 0 {
			end = start + i + 1
		}
		text := strings.TrimRight(string(data[start:end]), "\r\n")
		if start == 0 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		lines = append(lines, physLine{start: start, end: end, text: text})
		start = end
	}
	return lines
}

func isPySpace(r rune) bool {
	switch {
	case r >= '\t' && r <= '\r', r >= 0x1c && r <= ' ', r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// unquote strips one pair of matching outer quotes, as ConfigObj does.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == s[len(s)-1] && (s[0] == '"' || s[0] == '\'') {
		return s[1 : len(s)-1]
	}
	if len(s) == 1 && (s[0] == '"' || s[0] == '\'') {
		return ""
	}
	return s
}

// scan parses a renewal config and finds its hooks. Any error is a
// *ParseError naming the line.
func scan(data []byte) (*scanResult, error) {
	lines := splitLines(data)
	for i, l := range lines {
		if !utf8.ValidString(string(data[l.start:l.end])) {
			return nil, &ParseError{Line: i + 1, Msg: "invalid UTF-8"}
		}
	}
	res := &scanResult{lines: lines, marker: -1}
	root := &section{names: map[string]bool{}}
	cur := root
	initial := true
	for i := 0; i < len(lines); i++ {
		text := lines[i].text
		stripped := strings.TrimFunc(text, isPySpace)
		if stripped == "" || stripped[0] == '#' {
			if initial && res.marker < 0 && stripped == plinthMarker {
				res.marker = i
			}
			continue
		}
		initial = false
		fail := func(format string, args ...any) error {
			return &ParseError{Line: i + 1, Msg: fmt.Sprintf(format, args...)}
		}

		if m := reSection().FindStringSubmatch(text); m != nil {
			depth := strings.Count(m[2], "[")
			if depth != strings.Count(m[4], "]") {
				return nil, fail("section header has %d '[' but %d ']'", depth, strings.Count(m[4], "]"))
			}
			var parent *section
			switch {
			case depth <= cur.depth:
				for cur.depth > depth {
					cur = cur.parent
				}
				parent = cur.parent
			case depth == cur.depth+1:
				parent = cur
			default:
				return nil, fail("section nested too deeply (%d levels inside %d)", depth, cur.depth)
			}
			name := unquote(m[3])
			if parent.names[name] {
				return nil, fail("duplicate section or key %q", name)
			}
			parent.names[name] = true
			cur = &section{name: name, depth: depth, parent: parent, names: map[string]bool{}}
			continue
		}

		m := reKey().FindStringSubmatch(text)
		if m == nil {
			return nil, fail("neither a [section] nor a key = value line")
		}
		key, raw := unquote(m[2]), m[3]
		first := i
		var value string
		var list bool
		if q := raw[:min(3, len(raw))]; q == `'''` || q == `"""` {
			v, last, err := tripleQuoted(lines, i, q, raw)
			if err != nil {
				return nil, err
			}
			value, i = v, last
		} else {
			v, l, err := plainValue(raw)
			if err != nil {
				return nil, fail("%v", err)
			}
			value, list = v, l
		}
		if cur.names[key] {
			return nil, &ParseError{Line: first + 1, Msg: fmt.Sprintf("duplicate key %q", key)}
		}
		cur.names[key] = true
		if !hookKeys[key] {
			continue
		}
		if cur == root {
			return nil, &ParseError{Line: first + 1, Msg: fmt.Sprintf("hook key %s outside any section (certbot reads hooks only from [renewalparams])", key)}
		}
		if cur.depth == 1 && cur.name == "renewalparams" {
			res.hooks = append(res.hooks, hookEntry{key: key, value: value, list: list, first: first, last: i})
		}
	}
	return res, nil
}

// plainValue reads a value that does not start with triple quotes. A list
// comes back with its items joined by ",".
func plainValue(raw string) (value string, list bool, err error) {
	m := reValue().FindStringSubmatchIndex(raw)
	if m == nil {
		return "", false, fmt.Errorf("badly quoted value or invalid list: %s", clip(raw))
	}
	group := func(n int) (string, bool) {
		if m[2*n] < 0 {
			return "", false
		}
		return raw[m[2*n]:m[2*n+1]], true
	}
	listPart, _ := group(1)
	last, _ := group(2)
	if _, emptyList := group(3); emptyList {
		return "", true, nil
	}
	if listPart == "" {
		return unquote(last), false, nil
	}
	var items []string
	for _, it := range reListItem().FindAllStringSubmatch(listPart, -1) {
		if it[1] == "" {
			return "", false, fmt.Errorf("empty item in list value: %s", clip(raw))
		}
		items = append(items, unquote(it[1]))
	}
	if last != "" {
		items = append(items, unquote(last))
	}
	return strings.Join(items, ","), true, nil
}

// clip quotes a value for an error message, shortened to keep the message
// on one readable line.
func clip(s string) string {
	const n = 60
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "..."
	}
	return strconv.Quote(s)
}

// tripleQuoted reads a value opened with q on line i, which may close on a
// later line. It returns the value and the index of the closing line.
func tripleQuoted(lines []physLine, i int, q, raw string) (string, int, error) {
	one, closing := reTriple()[q][0], reTriple()[q][1]
	if m := one.FindStringSubmatch(raw); m != nil {
		return m[1], i, nil
	}
	if strings.Contains(raw[3:], q) {
		return "", 0, &ParseError{Line: i + 1, Msg: "text after the closing " + q + " that is not a comment"}
	}
	value := raw[3:]
	for j := i + 1; j < len(lines); j++ {
		text := lines[j].text
		if !strings.Contains(text, q) {
			value += "\n" + text
			continue
		}
		m := closing.FindStringSubmatch(text)
		if m == nil {
			return "", 0, &ParseError{Line: i + 1, Msg: fmt.Sprintf("text after the closing %s on line %d that is not a comment", q, j+1)}
		}
		return value + "\n" + m[1], j, nil
	}
	return "", 0, &ParseError{Line: i + 1, Msg: "unterminated " + q + " value"}
}
