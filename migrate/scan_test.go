package migrate

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

type scanHook struct {
	key, value  string
	first, last int // 1-based lines
}

// scanCases are small renewal configs and what certbot (ConfigObj) reads
// in them. TestConfigObjAgreement feeds the same inputs to ConfigObj.
var scanCases = []struct {
	name    string
	in      string
	hooks   []scanHook
	errLine int // 0: parses
}{
	{name: "empty", in: ""},
	{name: "only comments", in: "# a\n\n   # b\n"},
	{
		name:  "plain",
		in:    "[renewalparams]\npre_hook = certbus hook pre\n",
		hooks: []scanHook{{"pre_hook", "certbus hook pre", 2, 2}},
	},
	{
		name:  "spacing",
		in:    "[renewalparams]\n\tpre_hook=certbus hook pre   \n  post_hook   =   x  # c\n",
		hooks: []scanHook{{"pre_hook", "certbus hook pre", 2, 2}, {"post_hook", "x", 3, 3}},
	},
	{
		name:  "quotes",
		in:    "[renewalparams]\npre_hook = 'a # b'\npost_hook = \"it's\" # c\nrenew_hook = \"\"\ndeploy_hook = \"a\"b\"\n",
		hooks: []scanHook{{"pre_hook", "a # b", 2, 2}, {"post_hook", "it's", 3, 3}, {"renew_hook", "", 4, 4}, {"deploy_hook", `a"b`, 5, 5}},
	},
	{
		name:  "hash ends an unquoted value",
		in:    "[renewalparams]\npre_hook = a#b\npost_hook = #only a comment\n",
		hooks: []scanHook{{"pre_hook", "a", 2, 2}, {"post_hook", "", 3, 3}},
	},
	{
		name:  "quoted keys",
		in:    "[renewalparams]\n'pre_hook' = a\n\"post_hook\"=b\n",
		hooks: []scanHook{{"pre_hook", "a", 2, 2}, {"post_hook", "b", 3, 3}},
	},
	{
		name:  "lists",
		in:    "[renewalparams]\npre_hook = a, b\npost_hook = a,\nrenew_hook = ,\ndeploy_hook = \"x, y\", 'z',  # c\n",
		hooks: []scanHook{{"pre_hook", "a,b", 2, 2}, {"post_hook", "a", 3, 3}, {"renew_hook", "", 4, 4}, {"deploy_hook", "x, y,z", 5, 5}},
	},
	{
		name:  "triple quotes on one line",
		in:    "[renewalparams]\npre_hook = '''a 'b' \"c\"'''  # c\npost_hook = \"\"\"\"\"\"\n",
		hooks: []scanHook{{"pre_hook", `a 'b' "c"`, 2, 2}, {"post_hook", "", 3, 3}},
	},
	{
		name:  "triple quotes over lines",
		in:    "[renewalparams]\npre_hook = '''a\n[not a section]\nb = c\n'''\nx = 1\npost_hook = \"\"\"\n\"\"\" # c\n",
		hooks: []scanHook{{"pre_hook", "a\n[not a section]\nb = c\n", 2, 5}, {"post_hook", "\n", 7, 8}},
	},
	{
		name:  "triple quote closing with a quote before it",
		in:    "[renewalparams]\nrenew_hook = '''sh -c 'echo a\necho \"b\"''''\n",
		hooks: []scanHook{{"renew_hook", "sh -c 'echo a\necho \"b\"'", 2, 3}},
	},
	{
		name:  "nested sections",
		in:    "[renewalparams]\npre_hook = a\n[[webroot_map]]\npost_hook = b\n[[[deep]]]\nrenew_hook = c\n[other]\ndeploy_hook = d\n",
		hooks: []scanHook{{"pre_hook", "a", 2, 2}},
	},
	{
		name:  "back to renewalparams depth",
		in:    "[a]\n[[b]]\n[renewalparams]\npre_hook = x\n",
		hooks: []scanHook{{"pre_hook", "x", 4, 4}},
	},
	{
		name:  "section spellings",
		in:    "  [ 'renewalparams' ]   # c\npre_hook = x\n[[ \"m\" ]]\n",
		hooks: []scanHook{{"pre_hook", "x", 2, 2}},
	},
	{
		name:  "section name with brackets",
		in:    "[renewal]params]\npre_hook = x\n",
		hooks: nil,
	},
	{
		name:  "CRLF, BOM, no final newline",
		in:    "\ufeff# c\r\n[renewalparams]\r\npre_hook = x\r\r\npost_hook = y",
		hooks: []scanHook{{"pre_hook", "x", 3, 3}, {"post_hook", "y", 4, 4}},
	},
	{
		name:  "carriage return inside a line",
		in:    "[renewalparams]\npre_hook = x\ry = z\n",
		hooks: []scanHook{{"pre_hook", "x\ry = z", 2, 2}},
	},
	{
		name:  "unicode whitespace",
		in:    "[renewalparams]\n\u00a0pre_hook\u2003=\u3000x\u00a0\n",
		hooks: []scanHook{{"pre_hook", "x", 2, 2}},
	},
	{name: "not key or section", in: "[renewalparams]\njust words\n", errLine: 2},
	{name: "key without name", in: "[renewalparams]\n= x\n", errLine: 2},
	{name: "unterminated quote", in: "[renewalparams]\npre_hook = \"x\n", errLine: 2},
	{name: "text after quote", in: "[renewalparams]\npre_hook = \"x\" y\n", errLine: 2},
	{name: "empty list item", in: "[renewalparams]\npre_hook = a, , b\n", errLine: 2},
	{name: "unterminated triple", in: "[renewalparams]\npre_hook = '''x\ny\n", errLine: 2},
	{name: "text after triple", in: "[renewalparams]\npre_hook = '''x''' y\n", errLine: 2},
	{name: "text after closing triple", in: "[renewalparams]\npre_hook = '''x\ny''' z\n", errLine: 2},
	{
		name:  "lazy triple quotes",
		in:    "[renewalparams]\npre_hook = '''x''' '''\n",
		hooks: []scanHook{{"pre_hook", "x''' ", 2, 2}},
	},
	{name: "unbalanced brackets", in: "[renewalparams]]\n", errLine: 1},
	{name: "too nested", in: "[renewalparams]\n[[[x]]]\n", errLine: 2},
	{name: "duplicate key", in: "[renewalparams]\npre_hook = a\npre_hook = b\n", errLine: 3},
	{name: "duplicate section", in: "[renewalparams]\n[x]\n[renewalparams]\n", errLine: 3},
	{name: "key and section share a name", in: "x = 1\n[x]\n", errLine: 2},
	{name: "invalid UTF-8", in: "[renewalparams]\npre_hook = \xff\n", errLine: 2},
	{name: "invalid UTF-8 in a comment", in: "# \xc3\n", errLine: 1},
	{name: "hook key outside any section", in: "renew_hook = certbus hook deploy\n[renewalparams]\n", errLine: 1},
}

func TestScan(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := scan([]byte(tc.in))
			if tc.errLine != 0 {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Line != tc.errLine {
					t.Fatalf("got error %v, want a *ParseError at line %d", err, tc.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []scanHook
			for _, h := range res.hooks {
				got = append(got, scanHook{h.key, h.value, h.first + 1, h.last + 1})
			}
			if !slices.Equal(got, tc.hooks) {
				t.Errorf("hooks\n got %#v\nwant %#v", got, tc.hooks)
			}
			// The lines cover the input exactly.
			var b strings.Builder
			for _, l := range res.lines {
				b.WriteString(tc.in[l.start:l.end])
			}
			if b.String() != tc.in {
				t.Errorf("lines do not cover the input")
			}
		})
	}
}

func TestPlinthMarker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		all  bool
		want string
	}{
		// The marker goes with the hooks FreedomBox wrote.
		{"# This file was edited by Plinth.\nversion = 1\n[renewalparams]\npre_hook = certbus hook pre\n", false,
			"version = 1\n[renewalparams]\n"},
		// Not when nothing is removed.
		{"# This file was edited by Plinth.\n[renewalparams]\npre_hook = systemctl stop x\n", false,
			"# This file was edited by Plinth.\n[renewalparams]\npre_hook = systemctl stop x\n"},
		{"# This file was edited by Plinth.\r\n[renewalparams]\r\npre_hook = systemctl stop x\r\n", true,
			"[renewalparams]\r\n"},
		// Anywhere in the initial comment, but only there.
		{"# renew_before_expiry = 30 days\n  # This file was edited by Plinth.  \n[renewalparams]\npre_hook = certbus hook pre\n", false,
			"# renew_before_expiry = 30 days\n[renewalparams]\n"},
		{"[renewalparams]\n# This file was edited by Plinth.\npre_hook = certbus hook pre\n", false,
			"[renewalparams]\n# This file was edited by Plinth.\n"},
		{"# This file was edited by Plinth. Or not.\n[renewalparams]\npre_hook = certbus hook pre\n", false,
			"# This file was edited by Plinth. Or not.\n[renewalparams]\n"},
	} {
		e, err := analyze([]byte(tc.in), tc.all)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.output) != tc.want {
			t.Errorf("analyze(%q, %v) =\n%q\nwant\n%q", tc.in, tc.all, e.output, tc.want)
		}
	}
}
