package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// What certbot pays for the hook is mostly this binary's start, and every
// package linked adds to it: certbus-hook speaks D-Bus through bus/wire
// alone. godbus (reflection, its own init) and net (the poller) cost a
// hook process about 5% of its life (bench/RESULTS.md); this keeps them
// out.
func TestLinksNeitherGodbusNorNet(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/certbus/certbus/bus/wire") {
		t.Fatalf("certbus-hook does not link bus/wire; deps: %v", deps)
	}
	for _, heavy := range []string{"github.com/godbus/dbus/v5", "net", "os/exec", "encoding/json"} {
		if slices.Contains(deps, heavy) {
			t.Errorf("certbus-hook links %s", heavy)
		}
	}
}
