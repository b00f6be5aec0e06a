// Package testutil is the harness that certbus's integration and end-to-end
// tests share: it starts real protocol peers (a private system-bus-like
// dbus-daemon, the pebble ACME server, certbot) in temporary directories and
// stops exactly the processes it started when the test ends, pass or fail.
//
// It is imported only from _test.go files. It is not a mocking library: every
// helper runs the real program, and a test that needs a program which is
// missing skips, or fails when the CI environment variable is set (see Need),
// so CI never passes by skipping.
package testutil
