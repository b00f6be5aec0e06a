package signal

import (
	"github.com/certbus/certbus/apps/appstest"
	"testing"
)

func TestBuild(t *testing.T) {
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "default signal", Entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid}}\n",
			Reloaders: "signal SIGHUP to /run/go.pid"},
		{Name: "USR2 then a unit", Entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid, signal: USR2}, reload: {units: [go.service], mode: restart}}\n",
			Reloaders: "signal SIGUSR2 to /run/go.pid; systemd restart go.service"},
		{Name: "pid_file required", Entry: "  - {name: go, type: signal, domains: [a.test]}\n", Err: "pid_file"},
		{Name: "relative pid_file", Entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: go.pid}}\n", Err: "pid_file"},
		{Name: "bad signal", Entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid, signal: SIGFOO}}\n", Err: "unknown signal"},
		{Name: "domains required", Entry: "  - {name: go, type: signal, options: {pid_file: /run/go.pid}}\n", Err: "no domains"},
	})
}
