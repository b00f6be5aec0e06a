package hooks

import "github.com/certbus/certbus/internal/event"

// acmeshHint says how acme.sh runs the hook, for usage errors.
const acmeshHint = "`certbus hook acme.sh` must be run by acme.sh: `acme.sh --install-cert -d DOMAIN --reloadcmd \"certbus hook acme.sh\"`"

// AcmeSh builds the deploy event of acme.sh's --reloadcmd from the
// variables acme.sh exports to it: CERT_PATH (the leaf, acme.sh's own
// <domain>.cer), CERT_KEY_PATH, CERT_FULLCHAIN_PATH and CA_CERT_PATH
// (optional) and Le_Domain, the certificate's main domain. The event's
// domains are the certificate's DNS names. acme.sh runs the command once
// per certificate, without pre or post: the daemon debounces the reload.
func AcmeSh(getenv func(string) string) (Domains, error) {
	if getenv("Le_Domain") == "" {
		return nil, usage("Le_Domain is not set: %s", acmeshHint)
	}
	cert, err := need(getenv, "CERT_PATH", acmeshHint)
	if err != nil {
		return nil, err
	}
	key, err := need(getenv, "CERT_KEY_PATH", acmeshHint)
	if err != nil {
		return nil, err
	}
	full, err := optionalFile("CERT_FULLCHAIN_PATH", getenv("CERT_FULLCHAIN_PATH"))
	if err != nil {
		return nil, err
	}
	ca, err := optionalFile("CA_CERT_PATH", getenv("CA_CERT_PATH"))
	if err != nil {
		return nil, err
	}
	names, err := leafNames("CERT_PATH", cert)
	if err != nil {
		return nil, err
	}
	info := map[string]string{event.KeyCertificate: cert, event.KeyPrivateKey: key}
	if full != "" {
		info[event.KeyFullchain] = full
	}
	if ca != "" {
		info[event.KeyChain] = ca
	}
	return certDomains(getenv("Le_Domain"), names, info), nil
}
