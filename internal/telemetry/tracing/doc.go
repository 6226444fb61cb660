// Package tracing builds Berth's OpenTelemetry tracer provider: W3C trace
// context, a sampler, OTLP/HTTP export when a collector is configured, and
// a small bounded in-memory store of recent traces that the API serves to
// `berth traces` and `berth trace`.
//
// It owns the span store and the attribute names that the store reads
// (berth.workload, berth.environment). It does not create spans for anyone:
// the gateway, the activator and the workflow engine take the provider and
// trace their own work, and the store only sees spans that were sampled.
package tracing
