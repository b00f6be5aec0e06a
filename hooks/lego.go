package hooks

import "github.com/certbus/certbus/internal/event"

// legoHint says how lego runs the hook, for usage errors.
const legoHint = "`certbus hook lego` must be run by lego: `lego ... run --run-hook \"certbus hook lego\"` or `renew --renew-hook \"certbus hook lego\"`"

// Lego builds the deploy event of lego's --run-hook or --renew-hook from
// its environment: LEGO_CERT_PATH (the .crt, which holds the chain too
// unless lego ran with --no-bundle), LEGO_CERT_KEY_PATH,
// LEGO_ISSUER_CERT_PATH (optional) and LEGO_CERT_DOMAIN. The event's
// domains are the certificate's DNS names. Relative paths (lego's default
// --path is ./.lego) are taken from the working directory, which lego
// shares with its hook. lego has no pre or post hook: the daemon debounces
// the reload instead.
func Lego(getenv func(string) string) (Domains, error) {
	cert, err := need(getenv, "LEGO_CERT_PATH", legoHint)
	if err != nil {
		return nil, err
	}
	key, err := need(getenv, "LEGO_CERT_KEY_PATH", legoHint)
	if err != nil {
		return nil, err
	}
	issuer, err := optionalFile("LEGO_ISSUER_CERT_PATH", getenv("LEGO_ISSUER_CERT_PATH"))
	if err != nil {
		return nil, err
	}
	names, err := leafNames("LEGO_CERT_PATH", cert)
	if err != nil {
		return nil, err
	}
	info := map[string]string{event.KeyCertificate: cert, event.KeyPrivateKey: key}
	if issuer != "" {
		info[event.KeyChain] = issuer
	}
	return certDomains(getenv("LEGO_CERT_DOMAIN"), names, info), nil
}
