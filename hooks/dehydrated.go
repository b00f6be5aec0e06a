package hooks

import (
	"github.com/certbus/certbus/internal/event"
)

// Dehydrated turns one call of dehydrated's hook script (its arguments:
// the handler's name, then the handler's own) into the operation and
// domains of an event:
//
//	deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP  -> deploy
//	startup_hook                                                           -> pre
//	exit_hook [ERROR]                                                      -> post
//
// The deploy's domains are the certificate's DNS names. Every other
// handler (deploy_challenge, unchanged_cert, generate_csr, and whatever
// later versions add) gives op "" and no error: dehydrated requires a hook
// to accept what it does not know, and reads generate_csr's standard
// output as a CSR, so the caller must then print nothing and exit 0.
// exit_hook also runs after a failed run: the post still releases the
// reloads of the certificates that were deployed.
func Dehydrated(args []string) (op event.Operation, domains Domains, err error) {
	if len(args) == 0 {
		return "", nil, usage("no handler given: `certbus hook dehydrated` takes the arguments dehydrated passes its hook (HOOK=a script running `exec certbus hook dehydrated \"$@\"`)")
	}
	switch args[0] {
	case "startup_hook":
		return event.Pre, Domains{}, nil
	case "exit_hook":
		return event.Post, Domains{}, nil
	case "deploy_cert":
	default:
		return "", nil, nil
	}
	if len(args) < 6 {
		return "", nil, usage("deploy_cert takes DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE [TIMESTAMP], got %d argument(s)", len(args)-1)
	}
	main := args[1]
	var paths [4]string
	for i, name := range []string{"KEYFILE", "CERTFILE", "FULLCHAINFILE", "CHAINFILE"} {
		p, err := absPath("deploy_cert "+name, args[2+i])
		if err != nil {
			return "", nil, err
		}
		paths[i] = p
	}
	names, err := leafNames("deploy_cert CERTFILE", paths[1])
	if err != nil {
		return "", nil, err
	}
	info := map[string]string{
		event.KeyPrivateKey:  paths[0],
		event.KeyCertificate: paths[1],
		event.KeyFullchain:   paths[2],
		event.KeyChain:       paths[3],
	}
	return event.Deploy, certDomains(main, names, info), nil
}
