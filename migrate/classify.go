package migrate

import (
	"path"
	"regexp"
	"strings"
	"sync"
)

// Reasons a hook counts as legacy, as shown in the report.
const (
	ReasonPlinth  = "FreedomBox per-domain dispatcher"
	ReasonCertbus = "calls certbus"
	ReasonDBus    = "calls org.certbus.Dispatcher1"
)

// dbusClients are the command-line D-Bus clients a hand-written hook would
// use to call the dispatcher directly.
var dbusClients = map[string]bool{
	"busctl": true, "gdbus": true, "dbus-send": true, "qdbus": true, "qdbus6": true, "qdbus-qt5": true,
}

var reAssignment = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`) })

// legacyReason says why command is a per-domain dispatcher hook that the
// certbus directory hooks supersede, or returns "" for any other command.
//
// Only a single simple command counts: one that a hook runs and nothing
// else. "certbus hook deploy; systemctl reload nginx" does more than
// dispatch, so it is kept (and reported) rather than silently dropped.
func legacyReason(command string) string {
	words, ok := shellWords(command)
	if !ok {
		return ""
	}
	// Skip what only sets up the environment: "env", "exec", VAR=value.
	for len(words) > 0 && (words[0] == "env" || words[0] == "exec" || reAssignment().MatchString(words[0])) {
		words = words[1:]
	}
	if len(words) == 0 {
		return ""
	}
	switch prog := path.Base(words[0]); {
	case prog == "certbus":
		return ReasonCertbus
	case dbusClients[prog]:
		for _, w := range words[1:] {
			if strings.Contains(w, "org.certbus.Dispatcher1") {
				return ReasonDBus
			}
		}
	case prog == "letsencrypt" && isPlinthDispatch(words[1:]):
		return ReasonPlinth
	}
	return ""
}

// isPlinthDispatch recognises the arguments FreedomBox's actions/letsencrypt
// took as a certbot hook: run_pre_hooks, run_renew_hooks or run_post_hooks,
// then --domain D and, from 2018 on, --modules M....
func isPlinthDispatch(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "run_pre_hooks", "run_renew_hooks", "run_post_hooks":
	default:
		return false
	}
	domain, modules := false, false
	operand := func(s string) bool { return s != "" && !strings.HasPrefix(s, "-") }
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--domain" && !domain && i+1 < len(args) && operand(args[i+1]):
			domain = true
			i++
		case strings.HasPrefix(a, "--domain=") && !domain && operand(strings.TrimPrefix(a, "--domain=")):
			domain = true
		case a == "--modules" && !modules:
			modules = true
			for i+1 < len(args) && operand(args[i+1]) {
				i++
			}
		default:
			return false
		}
	}
	return domain
}

// shellWords splits a POSIX shell command into words, honouring quotes and
// backslashes. ok is false when the command is not one simple command: it
// has an operator (; & | < > ( ) or a newline), a command substitution, or
// an unterminated quote. A word starting with '#' ends the command.
func shellWords(s string) (words []string, ok bool) {
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			return words, true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '`' || s[i] == '$' && i+1 < len(s) && s[i+1] == '(':
					return nil, false
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0:
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, false
			}
			inWord = true
		case c == '\\':
			if i+1 == len(s) || s[i+1] == '\n' {
				return nil, false
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		case strings.IndexByte(";&|<>()`\n\r", c) >= 0, c == '$' && i+1 < len(s) && s[i+1] == '(':
			return nil, false
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, true
}
