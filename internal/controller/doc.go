// Package controller holds the control loops that turn desired state into
// the objects the backend runs: keyed work queues, level-triggered syncs,
// retries with backoff (the sample-controller's shape). The service
// controller makes revisions and rolls instances within the update
// strategy; the routes controller keeps the gateway's table in step with
// ready instances.
//
// Controllers only read and write the store: they never call the runtime.
package controller
