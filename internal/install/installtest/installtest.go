// Package installtest gives tests a directory that package install accepts
// as a destination.
//
// t.TempDir lives under /tmp, which is world-writable, so install refuses
// everything below it; tests of apps that copy files use Dir instead.
package installtest

import (
	"os"
	"testing"
)

// Dir returns a new empty directory for the calling test, root-owned, mode
// 0755, below /run (root-owned, not group- or world-writable, on every
// Debian system), and removes it when the test ends. install sets owners, so
// it needs root: without root Dir skips the test, or fails it when the CI
// environment variable is set, because CI must never pass by skipping.
func Dir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("installing files needs root; run the tests as root")
		}
		t.Skip("installing files needs root")
	}
	dir, err := os.MkdirTemp("/run", "certbus-test-")
	if err != nil {
		t.Fatalf("make test directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test directory: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("make test directory: %v", err)
	}
	return dir
}
