// Package metrics serves Berth's Prometheus metrics: what the gateway saw
// (requests, latency, in flight), what the activator saw (cold starts), and
// what the store, the runtime, the queue and the workflow engine hold
// (instances desired/ready/running, restarts, CPU and memory, queue depth,
// async outcomes, workflow executions).
//
// Counters the request path feeds are kept here (the gateway calls
// Observe); everything else is read at scrape time from its owner, so a
// number is never stale and nothing has to be told twice. It must not write
// to the store or start anything: a scrape only reads, with a deadline.
package metrics
