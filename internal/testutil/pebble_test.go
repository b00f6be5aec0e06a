package testutil

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPebble(t *testing.T) {
	Need(t, "pebble")
	t.Parallel()
	p := StartPebble(t)

	resp, err := p.Client().Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	var dir map[string]any
	err = json.NewDecoder(resp.Body).Decode(&dir)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	for _, k := range []string{"newAccount", "newNonce", "newOrder"} {
		if u, _ := dir[k].(string); !strings.HasPrefix(u, "https://127.0.0.1:") {
			t.Errorf("directory %s = %v", k, dir[k])
		}
	}

	// Pebble serves the certificate made for it, which only CABundle
	// vouches for.
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.DirectoryURL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots trusted pebble: %v", err)
	}
	b, err := os.ReadFile(p.CABundle)
	if block, _ := pem.Decode(b); err != nil || block == nil || block.Type != "CERTIFICATE" {
		t.Errorf("CABundle %s is not a PEM certificate (%v)", p.CABundle, err)
	}

	resp, err = p.Client().Get(p.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(root), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("management /roots/0: %.100s", root)
	}

	p.Stop(t)
	if exited, _ := p.proc.exited(); !exited {
		t.Errorf("pebble pid %d still running after Stop", p.proc.cmd.Process.Pid)
	}
	if _, err := p.Client().Get(p.DirectoryURL); err == nil {
		t.Error("pebble still answers after Stop")
	}
}

func TestHookErrors(t *testing.T) {
	const (
		ts = "2026-11-23 16:21:56,013"
		d  = "/c/renewal-hooks/deploy/"
	)
	tests := []struct {
		name string
		log  string
		want []string
	}{
		{name: "empty"},
		{
			name: "clean runs",
			log: ts + ":INFO:certbot.compat.misc:Running pre-hook command: /c/renewal-hooks/pre/50-certbus\n" +
				ts + ":INFO:certbot.compat.misc:Running deploy-hook command: " + d + "50-certbus\n" +
				ts + ":INFO:certbot.display.ops:Hook 'deploy-hook' ran with output:\n ok\n" +
				ts + ":INFO:certbot.compat.misc:Running post-hook command: /c/renewal-hooks/post/50-certbus\n",
		},
		{
			name: "exit and stderr",
			log: ts + ":INFO:certbot.compat.misc:Running deploy-hook command: " + d + "50-certbus\n" +
				ts + ":WARNING:certbot.display.ops:Hook 'deploy-hook' reported error code 3\n" +
				ts + ":WARNING:certbot.display.ops:Hook 'deploy-hook' ran with error output:\n" +
				" certbus: error: rejected\n certbus: hint: see the journal\n" +
				ts + ":INFO:certbot.compat.misc:Running deploy-hook command: " + d + "60-other\n" +
				ts + ":DEBUG:certbot._internal.renewal:ok\n",
			want: []string{"deploy-hook " + d + "50-certbus: exit 3: certbus: error: rejected | certbus: hint: see the journal"},
		},
		{
			name: "stderr only",
			log: ts + ":INFO:certbot.compat.misc:Running post-hook command: /x/post\n" +
				ts + ":WARNING:certbot.display.ops:Hook 'post-hook' ran with error output:\n warning: spooled\n",
			want: []string{"post-hook /x/post: exit 0: warning: spooled"},
		},
		{
			name: "exit without stderr, no Running line",
			log:  ts + ":WARNING:certbot.display.ops:Hook 'pre-hook' reported error code 1\n",
			want: []string{"pre-hook: exit 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HookErrors(tt.log)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") || len(got) != len(tt.want) {
				t.Errorf("HookErrors =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
