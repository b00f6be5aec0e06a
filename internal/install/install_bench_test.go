package install

import (
	"bytes"
	"os"
	"testing"
)

// BenchmarkWriteGroup installs what an app that copies writes for a
// two-name lineage: a key and a full chain in each name's directory, four
// files in two directories, synced. It runs on the disk under /var/lib
// (installtest.Dir is on /run, a tmpfs, where a sync costs nothing).
func BenchmarkWriteGroup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("installing files needs root")
	}
	root, err := os.MkdirTemp("/var/lib", "certbus-bench-install-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		b.Fatal(err)
	}
	key, chain := bytes.Repeat([]byte("k"), 250), bytes.Repeat([]byte("c"), 2600)
	var files []File
	for _, d := range []string{"example.com", "www.example.com"} {
		files = append(files,
			File{Path: root + "/" + d + "/privkey.pem", Data: key, Mode: 0o600},
			File{Path: root + "/" + d + "/fullchain.pem", Data: chain, Mode: 0o644})
	}
	for b.Loop() {
		if err := WriteGroup(files); err != nil {
			b.Fatal(err)
		}
	}
}
