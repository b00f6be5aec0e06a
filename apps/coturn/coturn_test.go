package coturn

import (
	"github.com/certbus/certbus/apps/appstest"
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
	appstest.RunBuildCases(t, []appstest.BuildCase{
		{Name: "defaults", Entry: "  - {name: turn, type: coturn, domains: [turn.test]}\n",
			Reloaders: "signal SIGUSR2; systemd restart coturn.service",
			Copy:      &apps.CopySpec{Certificate: DefaultCert, PrivateKey: DefaultKey, UID: uid, GID: gid, KeyMode: 0o600, CertMode: 0o644},
			Verify:    &apps.VerifySpec{Address: DefaultVerify, ServerName: "{domain}"}},
		{Name: "pid file and unit", Entry: "  - {name: turn, type: coturn, domains: [turn.test], options: {pid_file: /run/t.pid, unit: turn.service}}\n",
			Reloaders: "signal SIGUSR2 to /run/t.pid; systemd restart turn.service"},
		{Name: "command fallback", Entry: "  - {name: turn, type: coturn, domains: [turn.test], options: {pid_file: /run/t.pid}, reload: {command: [/bin/true]}}\n",
			Reloaders: "signal SIGUSR2 to /run/t.pid; command /bin/true"},
		{Name: "domains required", Entry: "  - {name: turn, type: coturn}\n", Err: "set domains"},
		{Name: "relative pid file", Entry: "  - {name: turn, type: coturn, domains: [a.test], options: {pid_file: t.pid}}\n", Err: "absolute"},
	})
}
