// Package certbotenv reads the environment certbot gives a directory hook
// and turns it into the domain map of a Notify call. It is the one piece of
// the hook that both `certbus hook` and the lean `certbus-hook` binary need,
// so it depends on nothing heavier than the event names: linking it must
// not cost a hook process its start-up time.
package certbotenv

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/certbus/certbus/internal/event"
)

// UsageError is a missing or malformed input: nothing is sent.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Domains builds the event of a certbot directory hook from its
// environment. For deploy it needs RENEWED_LINEAGE (the live/<name>
// directory) and RENEWED_DOMAINS; pre and post carry no domains. certbot
// 2.1.0 leaves the last deploy's RENEWED_* variables in a post hook's
// environment: they are ignored on purpose, since they are not the set
// renewed.
func Domains(op string, getenv func(string) string) (map[string]map[string]string, error) {
	switch event.Operation(op) {
	case event.Pre, event.Post:
		return map[string]map[string]string{}, nil
	case event.Deploy:
	default:
		return nil, usage("unknown hook %q: use pre, post or deploy", op)
	}
	lineage := getenv("RENEWED_LINEAGE")
	names := strings.Fields(getenv("RENEWED_DOMAINS"))
	if lineage == "" || len(names) == 0 {
		return nil, usage("RENEWED_LINEAGE and RENEWED_DOMAINS are not set: `certbus hook deploy` must be run by certbot as a deploy hook (renewal-hooks/deploy/ or --deploy-hook)")
	}
	if !filepath.IsAbs(lineage) {
		return nil, usage("RENEWED_LINEAGE %q is not an absolute path", lineage)
	}
	return LineageDomains(filepath.Clean(lineage), names), nil
}

// LineageDomains maps each name to the files of a certbot lineage
// directory.
func LineageDomains(lineage string, names []string) map[string]map[string]string {
	out := make(map[string]map[string]string, len(names))
	for _, n := range names {
		out[strings.ToLower(n)] = map[string]string{
			event.KeyCertificate: filepath.Join(lineage, "cert.pem"),
			event.KeyPrivateKey:  filepath.Join(lineage, "privkey.pem"),
			event.KeyFullchain:   filepath.Join(lineage, "fullchain.pem"),
			event.KeyChain:       filepath.Join(lineage, "chain.pem"),
			event.KeyLineage:     lineage,
		}
	}
	return out
}
