// Package signal is the generic signal app type: copy the files (optional,
// as for the service type), then send a signal to the process whose PID
// file is given. It suits daemons that reload their certificate on a signal,
// such as a Go server using certreload with SIGHUP.
//
// Options:
//
//	pid_file: /run/myserver.pid   # required, absolute
//	signal: SIGHUP                # default SIGHUP; name (HUP, SIGUSR2) or number
//
// reload: units or command, when given, are tried after the signal when it
// fails or verification does not see the new certificate. No verify by
// default. domains: is required.
package signal

import (
	"path/filepath"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

type options struct {
	PIDFile string `yaml:"pid_file"`
	Signal  string `yaml:"signal"`
}

// DefaultSignal is sent when options.signal is not set.
const DefaultSignal = "SIGHUP"

func init() {
	apps.Register(apps.Type{
		Name:  "signal",
		Doc:   "generic: copy the files (optional), send a signal to a PID file's process",
		Build: build,
	})
}

func build(a *config.App, env *apps.Env) (*apps.Spec, error) {
	o := options{}
	if err := a.DecodeOptions(&o); err != nil {
		return nil, err
	}
	if o.PIDFile == "" || !filepath.IsAbs(o.PIDFile) {
		return nil, a.Pos.Errorf("app %q: options.pid_file must be set to an absolute path (got %q)", a.Name, o.PIDFile)
	}
	if o.Signal == "" {
		o.Signal = DefaultSignal
	}
	sig, err := apps.ParseSignal(o.Signal)
	if err != nil {
		return nil, a.Pos.Errorf("app %q: options.signal: %v", a.Name, err)
	}
	s, err := apps.BuildCommon(a, env, apps.Defaults{})
	if err != nil {
		return nil, err
	}
	s.Reloaders = append([]apps.Reloader{&apps.SignalReloader{PIDFile: o.PIDFile, Signal: sig}}, s.Reloaders...)
	return s, nil
}
