package signal

import (
	"testing"
)

func TestBuild(t *testing.T) {
	runBuildCases(t, []buildCase{
		{name: "default signal", entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid}}\n",
			reloaders: "signal SIGHUP to /run/go.pid"},
		{name: "USR2 then a unit", entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid, signal: USR2}, reload: {units: [go.service], mode: restart}}\n",
			reloaders: "signal SIGUSR2 to /run/go.pid; systemd restart go.service"},
		{name: "pid_file required", entry: "  - {name: go, type: signal, domains: [a.test]}\n", err: "pid_file"},
		{name: "relative pid_file", entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: go.pid}}\n", err: "pid_file"},
		{name: "bad signal", entry: "  - {name: go, type: signal, domains: [a.test], options: {pid_file: /run/go.pid, signal: SIGFOO}}\n", err: "unknown signal"},
		{name: "domains required", entry: "  - {name: go, type: signal, options: {pid_file: /run/go.pid}}\n", err: "no domains"},
	})
}
