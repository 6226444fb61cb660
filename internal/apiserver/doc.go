// Package apiserver is Berth's HTTP API (docs/api.md): routing, bearer-token
// authentication, apply semantics (defaults, validation, generations,
// compare-and-swap), the rollout and logs endpoints, and the one mapping
// from *v1.Error kinds to HTTP status codes.
//
// It owns request handling only. It must not reconcile anything: it writes
// desired state (specs) to the store and reads what controllers wrote
// (status, revisions, instances, events); draining instances, making
// revisions and tearing down networks are the controllers' work, which they
// do when they see the change.
package apiserver
