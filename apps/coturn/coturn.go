// Package coturn is the coturn (TURN server) app type. It copies the
// certificate and key where the Debian setup keeps them, readable by the
// turnserver user the daemon runs as, then sends SIGUSR2 to turnserver,
// which makes it reload its TLS certificates without dropping allocations
// (SIGHUP only rotates logs). coturn.service has no ExecReload, so if the
// signal cannot be sent or the new certificate is not served, the chain
// falls back to a try-restart of the unit.
//
// Point turnserver.conf at the files:
//
//	cert=/etc/coturn/certs/cert.pem
//	pkey=/etc/coturn/certs/pkey.pem
//
// Options (all optional):
//
//	pid_file: ""             # turnserver's --pidfile; default: the MainPID of the unit
//	unit: coturn.service     # whose MainPID gets the signal, and the try-restart fallback
//
// Defaults: copy {certificate: /etc/coturn/certs/cert.pem, private_key:
// /etc/coturn/certs/pkey.pem, owner turnserver, group turnserver, key
// 0600}, reload {units: [coturn.service], mode: restart} after the signal,
// verify {address: 127.0.0.1:5349} (TURN over TLS). domains: is required.
package coturn

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
	"github.com/certbus/certbus/internal/systemd"
)

type options struct {
	PIDFile string `yaml:"pid_file"`
	Unit    string `yaml:"unit"`
}

// Defaults of the coturn type.
const (
	DefaultUnit   = "coturn.service"
	DefaultCert   = "/etc/coturn/certs/cert.pem"
	DefaultKey    = "/etc/coturn/certs/pkey.pem"
	DefaultOwner  = "turnserver"
	DefaultVerify = "127.0.0.1:5349"
)

func init() {
	apps.Register(apps.Type{
		Name:  "coturn",
		Doc:   "coturn: copy (owner turnserver), SIGUSR2 to turnserver, try-restart as a fallback",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if o.Unit == "" {
		o.Unit = DefaultUnit
	}
	if o.PIDFile != "" && !filepath.IsAbs(o.PIDFile) {
		return nil, a.Pos.Errorf("app %q: options.pid_file %q must be an absolute path", a.Name, o.PIDFile)
	}
	if a.Domains == nil {
		return nil, a.Pos.Errorf("app %q: set domains: the name coturn's certificate must cover", a.Name)
	}
	s, err := apps.BuildCommon(a, env, apps.Defaults{
		Copy:   &config.Copy{Certificate: DefaultCert, PrivateKey: DefaultKey, Owner: DefaultOwner, Group: DefaultOwner},
		Reload: &config.AppReload{Units: []string{o.Unit}, Mode: config.ModeRestart},
		Verify: &config.Verify{Address: DefaultVerify},
	})
	if err != nil {
		return nil, err
	}
	sig := &apps.SignalReloader{PIDFile: o.PIDFile, Signal: syscall.SIGUSR2}
	if o.PIDFile == "" {
		unit := o.Unit
		sig.PID = func(ctx context.Context) (int, error) { return mainPID(ctx, unit) }
	}
	s.Reloaders = append([]apps.Reloader{sig}, s.Reloaders...)
	return s, nil
}

// mainPID asks systemd for the unit's main process.
func mainPID(ctx context.Context, unit string) (int, error) {
	m, err := systemd.Connect(ctx)
	if err != nil {
		return 0, fmt.Errorf("find %s's process: %w (set options.pid_file on a host without systemd)", unit, err)
	}
	defer m.Close()
	pid, err := m.MainPID(ctx, unit)
	if err != nil {
		return 0, err
	}
	if pid == 0 {
		return 0, fmt.Errorf("%s has no main process (not running)", unit)
	}
	return pid, nil
}
