// Package server is the composition root: it reads the one Config, builds
// every part (store, containerd, network, runtime, controllers, agent,
// gateway, API), starts them in order and stops them in reverse, with a
// deadline, safe after a half-finished start.
package server
