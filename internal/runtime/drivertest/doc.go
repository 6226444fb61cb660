// Package drivertest is the conformance suite every runtime.Driver must
// pass, run against a real runtime with the echo test image
// (internal/testutil/testimage). It checks what the node agent relies on:
// images resolve to stable digests, containers start and log, SIGTERM is
// honoured within the grace period, exits and OOM kills are reported,
// capabilities are dropped, deletes are idempotent, and a new driver
// process takes over the containers of an old one.
//
// It only drives the interface; it must not reach into an implementation.
package drivertest
