// Package event defines the certificate event that travels from the D-Bus
// edge through the signal to the apps. It holds data only; validation lives in
// internal/certs and delivery in signals.
package event

import (
	"sort"
	"time"
)

// Operation is the kind of hook that produced an event.
type Operation string

// The three operations of the D-Bus contract.
const (
	Pre    Operation = "pre"
	Post   Operation = "post"
	Deploy Operation = "deploy"
)

// Valid reports whether op is one of pre, post or deploy.
func (op Operation) Valid() bool {
	return op == Pre || op == Post || op == Deploy
}

// Info keys accepted in the domains map of Notify.
const (
	KeyCertificate = "certificate"
	KeyPrivateKey  = "private_key"
	KeyFullchain   = "fullchain"
	KeyChain       = "chain"
	KeyLineage     = "lineage"
)

// Material is the validated content of one domain's files, read once at the
// edge so that every app installs exactly the bytes that were checked.
type Material struct {
	// Paths as given by the caller (absolute).
	Paths map[string]string `json:"paths"`
	// Certificate is the leaf certificate PEM (cert.pem).
	Certificate []byte `json:"-"`
	// Fullchain is the leaf followed by its chain (fullchain.pem). When the
	// caller gave no fullchain it is the certificate file, which may already
	// hold the chain.
	Fullchain []byte `json:"-"`
	// Chain is the issuer chain without the leaf, possibly empty.
	Chain []byte `json:"-"`
	// PrivateKey is the PEM private key.
	PrivateKey []byte `json:"-"`
	// Fingerprint is the hex SHA-256 of the leaf's DER.
	Fingerprint string `json:"fingerprint"`
	// NotAfter is the leaf's expiry.
	NotAfter time.Time `json:"not_after"`
}

// Event is one accepted hook call.
type Event struct {
	ID        string    `json:"id"`
	Operation Operation `json:"operation"`
	Time      time.Time `json:"time"`
	// Domains maps a lower-case domain name to its material. Empty for pre
	// and post.
	Domains map[string]*Material `json:"domains"`
	// Replay marks an event replayed from the spool or from catch-up.
	Replay bool `json:"replay,omitempty"`
	// Only, when set, names the apps the event is for (catch-up replays a
	// renewal only to the apps that missed it); the others skip it.
	Only []string `json:"only,omitempty"`
	// Quiet is how long the daemon went without accepting an event before
	// this one (0 for its first): a certbot run that sent nothing for
	// max_delay is over, its post lost.
	Quiet time.Duration `json:"-"`
}

// DomainNames returns the event's domains in sorted order.
func (e *Event) DomainNames() []string {
	names := make([]string, 0, len(e.Domains))
	for d := range e.Domains {
		names = append(names, d)
	}
	sort.Strings(names)
	return names
}
