// Package metrics serves Berth's Prometheus metrics at /metrics. It owns
// the registry, the Go runtime's and the process's metrics, the instance
// gauges (desired, ready, running, restarts; CPU and memory from the
// runtime) and the workflow counts the engine reports through its Observer.
//
// Every other series belongs to the part that counts it: the gateway, the
// activator and the queue each export a collector, and the composition
// root registers them here (Register). So this package imports none of
// them, and none of them imports it. A scrape only reads: the instance
// gauges come from an Inventory held in memory (the controllers' caches
// and the backend's), never from listing the store, and runtime reads are
// bounded by the scrape's deadline. ServeMetrics filters by the
// environment label, for callers who may see only some environments.
package metrics
