// Command certbus delivers renewed TLS certificates to every service on a
// host: see README.md and `certbus --help`.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
