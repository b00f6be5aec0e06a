package appstatus

import (
	"reflect"
	"testing"
)

// FixPlan sends one deploy per certificate file, for the domains of the
// rows deploying it again can repair, each with its own copy of the info.
func TestFixPlan(t *testing.T) {
	a := &certSource{path: "/le/live/a/cert.pem", paths: map[string]string{"certificate": "/le/live/a/cert.pem"}}
	b := &certSource{path: "/acme/b.pem", paths: map[string]string{"certificate": "/acme/b.pem"}}
	rep := &Report{Rows: []Row{
		{App: "web", Domain: "www.a.test", Copy: CopyOutdated, Daemon: DaemonNA, src: a},
		{App: "mail", Domain: "a.test", Copy: CopyNA, Daemon: DaemonStale, src: a},
		{App: "db", Domain: "a.test", Copy: CopyMissing, Daemon: DaemonNA, src: a},
		{App: "web", Domain: "b.test", Copy: CopyUpToDate, Daemon: DaemonFresh, src: b},
		{App: "web", Domain: "c.test", Copy: CopyNA, Daemon: DaemonNA},
		{App: "old", Domain: "b.test", Copy: CopyNA, Daemon: DaemonServing, src: b},
	}}
	if n := rep.Fixable(); n != 3 {
		t.Errorf("Fixable() = %d, want 3", n)
	}
	plan := rep.FixPlan()
	if len(plan) != 1 || plan[0].Source != a.path || !reflect.DeepEqual(plan[0].Domains, []string{"a.test", "www.a.test"}) {
		t.Fatalf("FixPlan() = %+v, want one deploy of %s for a.test www.a.test", plan, a.path)
	}
	for _, d := range plan[0].Domains {
		if !reflect.DeepEqual(plan[0].Info[d], a.paths) {
			t.Errorf("info of %s: %v, want %v", d, plan[0].Info[d], a.paths)
		}
	}
	plan[0].Info["a.test"]["certificate"] = "changed"
	if plan[0].Info["www.a.test"]["certificate"] == "changed" || a.paths["certificate"] == "changed" {
		t.Error("the domains of a deploy share their info map")
	}
	if got := (&Report{}).FixPlan(); len(got) != 0 {
		t.Errorf("FixPlan of an empty report = %+v", got)
	}
}
