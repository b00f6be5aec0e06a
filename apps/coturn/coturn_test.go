package coturn

import (
	"github.com/certbus/certbus/internal/testutil"
	"os/user"
	"strconv"
	"testing"

	"github.com/certbus/certbus/apps"
)

func TestBuild(t *testing.T) {
	u, err := user.Lookup(DefaultOwner)
	if err != nil {
		testutil.Missing(t, "no %s user (install coturn): %v", DefaultOwner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	runBuildCases(t, []buildCase{
		{name: "defaults", entry: "  - {name: turn, type: coturn, domains: [turn.test]}\n",
			reloaders: "signal SIGUSR2; systemd restart coturn.service",
			copy:      &apps.CopySpec{Certificate: DefaultCert, PrivateKey: DefaultKey, UID: uid, GID: gid, KeyMode: 0o600, CertMode: 0o644},
			verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}"}},
		{name: "pid file and unit", entry: "  - {name: turn, type: coturn, domains: [turn.test], options: {pid_file: /run/t.pid, unit: turn.service}}\n",
			reloaders: "signal SIGUSR2 to /run/t.pid; systemd restart turn.service"},
		{name: "command fallback", entry: "  - {name: turn, type: coturn, domains: [turn.test], options: {pid_file: /run/t.pid}, reload: {command: [/bin/true]}}\n",
			reloaders: "signal SIGUSR2 to /run/t.pid; command /bin/true"},
		{name: "domains required", entry: "  - {name: turn, type: coturn}\n", err: "set domains"},
		{name: "relative pid file", entry: "  - {name: turn, type: coturn, domains: [a.test], options: {pid_file: t.pid}}\n", err: "absolute"},
	})
}
