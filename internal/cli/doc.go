// Package cli holds the berth command line: kubectl-like verbs (apply, get,
// describe, delete, logs, rollout, image) over the HTTP API, the tables and
// -o formats they print, and the one mapping from error kinds to exit codes.
//
// It talks to a server only through berth.dev/berth/client and must not
// import the server's packages: `berth server` and `berth log-shim` are wired
// in cmd/berth so that this package stays a pure API client.
package cli
