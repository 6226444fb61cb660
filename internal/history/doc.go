// Package history keeps, per workload and per minute, what the advisor
// needs to replay its traffic: requests, in-flight concurrency (max, and
// the mean as the area under the in-flight curve), duration percentiles,
// errors, instances and instance-seconds, CPU seconds, memory, cold starts
// and instance starts with their durations. It owns DATA/history.db, a
// bbolt file of its own (a record a minute per workload in the main store
// would churn its watch stream and event history), the Recorder that
// samples the data plane, and the retention that bounds the file.
//
// A workload's history is keyed by environment and name, not kind: a
// workload converted from a Service to a Function keeps one history, and
// each minute says which way it ran.
//
// It reads what other parts already export (the gateway's Load, the
// backend's instances and usage, the gateway's and activator's Prometheus
// collectors) and changes nothing anywhere. It does not decide anything
// about the history it keeps; package advisor does.
package history
