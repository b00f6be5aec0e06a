package appstatus

import (
	"strings"
	"testing"

	"github.com/certbus/certbus/apps"
	"github.com/certbus/certbus/apps/nginx"
)

// daemonRefs looks through reload methods that wrap others (nginx's
// configuration test before the reload) to the daemon behind them.
func TestDaemonRefsThroughWrappers(t *testing.T) {
	rs := []apps.Reloader{
		&nginx.TestedReloader{Test: &apps.CommandReloader{Argv: []string{"/usr/sbin/nginx", "-t"}}, Next: &apps.UnitReloader{Unit: "nginx.service"}},
		&apps.SignalReloader{PIDFile: "/run/x.pid"},
		&apps.UnitReloader{Unit: "nginx.service"},
		&apps.CommandReloader{Argv: []string{"/bin/true"}},
	}
	var got []string
	for _, r := range daemonRefs(rs) {
		got = append(got, r.String())
	}
	if want := "nginx.service,pid file /run/x.pid"; strings.Join(got, ",") != want {
		t.Errorf("daemons %v, want %s", got, want)
	}
}
