package testutil

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// readCert parses the first certificate of a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// checkLive checks that every live/ file of the lineage is a symlink to
// ../../archive/<name>/<file><n>.pem.
func checkLive(t *testing.T, c *Certbot, name string, n int) {
	t.Helper()
	for _, f := range []string{"cert", "chain", "fullchain", "privkey"} {
		link := filepath.Join(c.Lineage(name), f+".pem")
		got, err := os.Readlink(link)
		if err != nil {
			t.Fatalf("live file: %v", err)
		}
		if want := fmt.Sprintf("../../archive/%s/%s%d.pem", name, f, n); got != want {
			t.Errorf("%s -> %s, want %s", link, got, want)
		}
	}
}

func writeHook(t *testing.T, c *Certbot, kind, name, script string) {
	t.Helper()
	dir := filepath.Join(c.ConfigDir, "renewal-hooks", kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCertbotIssueAndRenew(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: about 10s")
	}
	Need(t, "pebble", "certbot")
	t.Parallel()
	start := time.Now()
	p := StartPebble(t)
	t.Logf("timing: pebble up in %v", time.Since(start).Round(time.Millisecond))
	c := NewCertbot(t, p)

	start = time.Now()
	c.Certonly(t, "one", "one.example.com")
	t.Logf("timing: first certonly (with account registration) %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	c.Certonly(t, "two", "two.example.com", "www.two.example.com")
	t.Logf("timing: second certonly (two domains) %v", time.Since(start).Round(time.Millisecond))

	checkLive(t, c, "one", 1)
	checkLive(t, c, "two", 1)
	old := readCert(t, filepath.Join(c.Lineage("two"), "cert.pem"))
	if want := []string{"two.example.com", "www.two.example.com"}; !slices.Equal(old.DNSNames, want) {
		t.Errorf("two: names %v, want %v", old.DNSNames, want)
	}
	t.Logf("pebble 2.4 leaf validity: %v (NotBefore %v, NotAfter %v)",
		old.NotAfter.Sub(old.NotBefore), old.NotBefore.UTC(), old.NotAfter.UTC())

	record := filepath.Join(t.TempDir(), "hooks.txt")
	writeHook(t, c, "pre", "10-record", fmt.Sprintf(`echo "pre $CERTBUS_TEST" >> %s`, record))
	writeHook(t, c, "deploy", "10-record", fmt.Sprintf(`echo "deploy $RENEWED_LINEAGE $RENEWED_DOMAINS" >> %s`, record))
	writeHook(t, c, "deploy", "20-fail", `echo "cannot deploy $RENEWED_LINEAGE" >&2; exit 3`)
	writeHook(t, c, "post", "10-record", fmt.Sprintf(`echo "post" >> %s`, record))
	c.Env = []string{"CERTBUS_TEST=from-env"}

	start = time.Now()
	out := c.Renew(t)
	t.Logf("timing: renew of two lineages %v", time.Since(start).Round(time.Millisecond))

	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("hooks did not run: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{
		"pre from-env",
		"deploy " + c.Lineage("one") + " one.example.com",
		"deploy " + c.Lineage("two") + " two.example.com www.two.example.com",
		"post",
	}
	if !slices.Equal(got, want) {
		t.Errorf("hook runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkLive(t, c, "one", 2)
	checkLive(t, c, "two", 2)
	if renewed := readCert(t, filepath.Join(c.Lineage("two"), "cert.pem")); renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("two: live cert.pem still has the old serial")
	}

	logText := c.LogText(t)
	if n := strings.Count(logText, ":certbot._internal.main:Arguments: "); n != 1 || !strings.Contains(logText, "'--force-renewal'") {
		t.Errorf("LogText holds %d runs, want only the renew", n)
	}
	errs := HookErrors(logText)
	wantErrs := []string{
		"deploy-hook " + filepath.Join(c.ConfigDir, "renewal-hooks/deploy/20-fail") + ": exit 3: cannot deploy " + c.Lineage("one"),
		"deploy-hook " + filepath.Join(c.ConfigDir, "renewal-hooks/deploy/20-fail") + ": exit 3: cannot deploy " + c.Lineage("two"),
	}
	if !slices.Equal(errs, wantErrs) {
		t.Errorf("HookErrors:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
	}
}
