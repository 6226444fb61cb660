// Package local is the backend that runs workloads on this machine: its
// node agent turns Instance objects into containers (through the runtime
// driver) attached to their environment's network, probes them, restarts
// them with backoff, drains and stops them, and reports their status.
//
// It decides nothing about how many instances there should be or of which
// revision: that is the controllers' job. It never stops a container
// because the server is shutting down, so a restarted server re-attaches.
package local
