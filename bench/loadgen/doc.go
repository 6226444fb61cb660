// Package loadgen drives HTTP load at one URL from a fixed number of
// keep-alive workers and reports throughput, latency percentiles and
// failures. Benchmarks use Run for a measured burst; rollout tests use
// Start and Stop to keep traffic flowing while something changes and then
// count what failed.
//
// It measures; it does not judge. Thresholds belong to the caller.
package loadgen
