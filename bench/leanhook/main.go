// Command leanhook is a measuring prototype, not a product: the least a
// certbot deploy hook must do to reach certbus (read certbot's environment,
// connect to the bus, call Notify, print the event id), linked against
// godbus alone. The bench times it beside `certbus hook deploy` to show how
// much of the hook's cost is the certbus binary's start-up rather than the
// work. It has no spool, no config and no cobra on purpose.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/godbus/dbus/v5"
)

func main() {
	lineage := os.Getenv("RENEWED_LINEAGE")
	names := strings.Fields(os.Getenv("RENEWED_DOMAINS"))
	if lineage == "" || len(names) == 0 {
		fmt.Fprintln(os.Stderr, "leanhook: RENEWED_LINEAGE and RENEWED_DOMAINS must be set")
		os.Exit(2)
	}
	domains := make(map[string]map[string]string, len(names))
	for _, n := range names {
		domains[strings.ToLower(n)] = map[string]string{
			"certificate": filepath.Join(lineage, "cert.pem"),
			"private_key": filepath.Join(lineage, "privkey.pem"),
			"fullchain":   filepath.Join(lineage, "fullchain.pem"),
			"chain":       filepath.Join(lineage, "chain.pem"),
			"lineage":     lineage,
		}
	}
	conn, err := dbus.Connect(os.Getenv("CERTBUS_BUS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "leanhook:", err)
		os.Exit(1)
	}
	defer conn.Close()
	var id string
	err = conn.Object("org.certbus.Dispatcher1", "/org/certbus/Dispatcher1").
		Call("org.certbus.Dispatcher1.Notify", 0, "deploy", domains).Store(&id)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leanhook:", err)
		os.Exit(1)
	}
	fmt.Println("leanhook: deploy event", id, "delivered")
}
