// Package service is the generic app type: copy the files where a daemon
// reads them, then reload it by systemd units or a command. Every other
// type is this one with its daemon's defaults.
package service

import (
	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/internal/config"
)

// options: the service type has none; an empty struct makes any key an error.
type options struct{}

func init() {
	apps.Register(apps.Type{
		Name: "service",
		Doc:  "generic: copy the files (optional), reload systemd units or run a command",
		Build: func(a *config.App, env *apps.Env) (*apps.Spec, error) {
			if err := a.DecodeOptions(&options{}); err != nil {
				return nil, err
			}
			return apps.BuildCommon(a, env, apps.Defaults{})
		},
	})
}
