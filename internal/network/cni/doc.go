// Package cni is the network.Manager of the local backend: each instance
// gets a network namespace pinned at DataDir/netns/<id>, attached by the
// standard CNI plugins (loopback; bridge + host-local + firewall) to its
// environment's bridge. Each environment gets one /24 of the subnet pool and
// one bridge holding the gateway address x.x.x.1, so the host reaches every
// instance by IP and instances reach the outside through masquerade.
//
// It owns the subnet allocation, the namespace files, the attachment records
// and the iptables rules that isolate environments, all persisted under
// DataDir so a restarted server can look up, detach and garbage-collect what
// an earlier one made. It must not know about containers, services or the
// store, and must not touch host state other than its own bridges, their
// CNI-made rules and its isolation chain.
//
// It drives libcni (github.com/containernetworking/cni/libcni) directly
// rather than through containerd's go-cni wrapper, because go-cni has no way
// to move libcni's result cache off /var/lib/cni, and each Manager must keep
// all of its state under its own DataDir.
//
// Isolation between environments: a filter chain named after the bridge
// prefix (BERTH-ISOLATION by default) RETURNs traffic that stays on one
// bridge and DROPs anything forwarded from one berth bridge to another. It is
// jumped to from FORWARD and is the firewall plugin's admin chain, so it runs
// before the plugin's per-instance ACCEPT rules. Host-to-instance traffic
// (OUTPUT/INPUT) and instance-to-outside traffic are untouched. Allowing an
// environment in through Environment.spec.allowFrom will mean inserting
// "-i <caller bridge> -o <target bridge> -j RETURN" ahead of the DROP; since
// the design routes service-to-service calls through the gateway on the
// host, that is only needed for direct instance-to-instance traffic.
package cni
