package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/certbus/certbus/internal/testutil"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// configObjScript loads each input with ConfigObj the way certbot does and
// reports whether it parsed, the line of the first error, and the hooks in
// [renewalparams].
const configObjScript = `
import base64, io, json, sys, configobj
out = []
for b in json.load(sys.stdin):
    r = {"ok": False, "line": 0, "hooks": {}}
    try:
        c = configobj.ConfigObj(io.BytesIO(base64.b64decode(b)).readlines(), encoding="utf-8", default_encoding="utf-8")
        r["ok"] = True
        rp = c.get("renewalparams")
        if isinstance(rp, configobj.Section):
            for k in ("pre_hook", "post_hook", "renew_hook", "deploy_hook"):
                if k in rp.scalars:
                    v = rp[k]
                    r["hooks"][k] = ",".join(v) if isinstance(v, list) else v
    except configobj.ConfigObjError as e:
        r["line"] = e.line_number or 0
    except UnicodeDecodeError:
        pass
    out.append(r)
json.dump(out, sys.stdout)
`

type configObjResult struct {
	OK    bool              `json:"ok"`
	Line  int               `json:"line"`
	Hooks map[string]string `json:"hooks"`
}

// runConfigObj needs certbot's own parser: python3 with configobj, which
// the certbot package pulls in.
func runConfigObj(t *testing.T, inputs [][]byte) []configObjResult {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import configobj").Run(); err != nil {
		testutil.Missing(t, "python3 with configobj (installed with certbot) is needed: %v", err)
	}
	in, err := json.Marshal(inputs) // []byte marshals as base64
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", configObjScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("configobj: %v\n%s", err, stderr.Bytes())
	}
	var res []configObjResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestConfigObjAgreement checks the scanner against ConfigObj itself on
// every test input: same verdict, same error line, same hook values.
// Set CERTBUS_CONFIGOBJ_RANDOM=N to add N generated inputs.
func TestConfigObjAgreement(t *testing.T) {
	var inputs [][]byte
	var names []string
	for _, tc := range scanCases {
		inputs = append(inputs, []byte(tc.in))
		names = append(names, "scanCases/"+tc.name)
	}
	files, _ := filepath.Glob("testdata/*.conf*")
	for _, f := range files {
		if strings.HasSuffix(f, "README") {
			continue
		}
		inputs = append(inputs, readTestdata(t, filepath.Base(f)))
		names = append(names, f)
	}
	if n, _ := strconv.Atoi(os.Getenv("CERTBUS_CONFIGOBJ_RANDOM")); n > 0 {
		rng := rand.New(rand.NewPCG(uint64(n), 1))
		for i := range n {
			inputs = append(inputs, randomConfig(rng))
			names = append(names, "random/"+strconv.Itoa(i))
		}
	}
	want := runConfigObj(t, inputs)
	for i, in := range inputs {
		res, err := scan(in)
		w := want[i]
		var pe *ParseError
		switch {
		case err != nil && !errors.As(err, &pe):
			t.Errorf("%s: error is not a *ParseError: %v", names[i], err)
		case err != nil && strings.Contains(pe.Msg, "outside any section"):
			// Our own rule: ConfigObj loads it, certbot ignores the hook.
		case err != nil && w.OK:
			t.Errorf("%s: scan says %v, ConfigObj parses it\n%q", names[i], err, in)
		case err != nil && strings.HasPrefix(pe.Msg, "duplicate key") && w.Line >= pe.Line:
			// ConfigObj names the last line of a multi-line value; we
			// name the key's line.
		case err != nil && w.Line != 0 && w.Line != pe.Line:
			t.Errorf("%s: scan says %v, ConfigObj says line %d\n%q", names[i], err, w.Line, in)
		case err == nil && !w.OK:
			t.Errorf("%s: scan parses it, ConfigObj fails at line %d\n%q", names[i], w.Line, in)
		case err == nil:
			got := map[string]string{}
			for _, h := range res.hooks {
				got[h.key] = h.value
			}
			if len(got) != len(w.Hooks) {
				t.Errorf("%s: hooks %q, ConfigObj %q\n%q", names[i], got, w.Hooks, in)
			}
			for k, v := range w.Hooks {
				if got[k] != v {
					t.Errorf("%s: %s = %q, ConfigObj %q\n%q", names[i], k, got[k], v, in)
				}
			}
		}
	}
}

// randomConfig builds a renewal-config-like input from fragments chosen to
// reach the corners of ConfigObj's grammar.
func randomConfig(rng *rand.Rand) []byte {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	indents := []string{"", "", " ", "\t", "  ", "\u00a0"}
	keys := []string{"pre_hook", "post_hook", "renew_hook", "deploy_hook", "'pre_hook'", `"post_hook"`, "x", "a b", "k#", "'q'x'", `"`, "=", "renew_hook "}
	eqs := []string{" = ", "=", " =", "= ", "\t=\t", " == "}
	atoms := []string{"certbus hook pre", "a", "", " ", "'s'", `"d"`, `"a, b"`, `'it''s'`, "a#b", "# c", "#", ",", ", ", "'", `"`, `\`, "\"x\" y", "'''", `"""`, "'''x'''", `"""y"""`, "x'''", "\r", "a,", "é", "\xff", "[s]", "\u2003"}
	sections := []string{"[renewalparams]", "[[webroot_map]]", "[[[deep]]]", "[ renewalparams ]", "['renewalparams']", "[x]", "[[x]", "[x]]", "[]", "[ ]", "[\"a\"]", "[a] # c", "[a] b", "[[renewalparams]]"}
	var b strings.Builder
	if rng.IntN(10) == 0 {
		b.WriteString("\ufeff")
	}
	n := rng.IntN(12)
	for range n {
		switch rng.IntN(10) {
		case 0, 1:
			b.WriteString(pick(indents) + pick(sections))
		case 2:
			b.WriteString(pick([]string{"", "# c", "  # c", "# This file was edited by Plinth."}))
		default:
			b.WriteString(pick(indents) + pick(keys) + pick(eqs))
			for range rng.IntN(4) {
				b.WriteString(pick(atoms))
			}
		}
		b.WriteString(pick([]string{"\n", "\n", "\n", "\r\n", ""}))
	}
	return []byte(b.String())
}
