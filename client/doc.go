// Package client is the Go client of Berth's HTTP API (docs/api.md): it finds
// the server's address and token the way the CLI documents, speaks JSON to
// /api/v1/, and turns every failure into a *v1.Error so callers branch on
// v1.KindOf alone.
//
// It is the only door into a server for the CLI, the dashboard tests and the
// end-to-end tests, so it must not import anything under internal/: what it
// needs to know about resources lives in api/v1.
package client
