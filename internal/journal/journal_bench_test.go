package journal

import (
	"testing"
	"time"
)

// BenchmarkAppend is one accepted event made durable: an entry the size
// of a two-name deploy, written and synced, in a directory of the disk the
// test runs on (set TMPDIR to measure another).
func BenchmarkAppend(b *testing.B) {
	j, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	paths := map[string]string{
		"certificate": "/etc/letsencrypt/live/example.com/cert.pem",
		"private_key": "/etc/letsencrypt/live/example.com/privkey.pem",
		"fullchain":   "/etc/letsencrypt/live/example.com/fullchain.pem",
		"chain":       "/etc/letsencrypt/live/example.com/chain.pem",
		"lineage":     "/etc/letsencrypt/live/example.com",
	}
	d := EntryDomain{Paths: paths, Fingerprint: "5f1c0e0d4b0c9c1f4f3c8c2a0e9b1d7a6c5b4a39281706f5e4d3c2b1a0918273", NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	en := Entry{ID: "20261123T221500Z-1-abcdef", Operation: "deploy", Time: time.Now(), Domains: map[string]EntryDomain{"example.com": d, "www.example.com": d}}
	for b.Loop() {
		if err := j.Append(en); err != nil {
			b.Fatal(err)
		}
	}
}
