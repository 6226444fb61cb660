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
// before the plugin's per-instance ACCEPT rules. Calls between environments
// go through the gateway on the host, never instance to instance, so no
// allowFrom ever opens this chain. The same chain drops what instances send
// to the link-local range (cloud metadata services).
//
// IPv6: the rules above are IPv4 rules, so instances get no IPv6 at all.
// Each bridge, the host end of each instance's veth and (through the
// namespace's default) the instance's eth0 have IPv6 disabled, so neither
// side has even a link-local address: an instance cannot reach a host
// service listening on [::], nor the host an instance's.
//
// Isolation of the host: a second chain (BERTH-INPUT), jumped to from INPUT
// for packets arriving on any berth bridge, accepts answers to connections
// the host opened and, per environment, its own bridge address on port 80
// (the gateway) and 53 (its DNS); it drops everything else, so instances
// reach neither another environment's gateway address nor the API,
// containerd or any other host port. Host-to-instance traffic and
// instance-to-outside traffic are untouched. Both chains are checked at the
// first use of each environment in a process (idempotently) and an
// environment's rules go with RemoveEnvironment.
package cni
