package cni

import (
	"context"
	"net"
	"strings"
)

// The host chain (one per bridge prefix, e.g. BERTH-INPUT) guards the host
// itself from its instances. INPUT jumps to it for every packet that arrives
// on one of the manager's bridges (a jump per bridge, not a berth+ wildcard,
// so another manager whose prefix extends ours is never caught); it holds:
//
//	-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//	-i berthN -d GW_N -p tcp --dport 80 -j ACCEPT    the gateway on the bridge
//	-i berthN -d GW_N -p udp --dport 53 -j ACCEPT    the environment's DNS
//	-i berthN -d GW_N -p tcp --dport 53 -j ACCEPT
//	-j DROP                                          last
//
// So an instance reaches only its own bridge's gateway address, on the
// gateway and DNS ports: not another environment's gateway address (the -i
// and -d must both match), not the API, containerd or any other host
// service on any host address. Answers to connections the host opened
// (health probes, the gateway's upstream calls) are ESTABLISHED and pass.

// Ports an instance may reach on its bridge's gateway address.
const (
	gatewayPort = "80"
	dnsPort     = "53"
)

func (m *Manager) hostChain() string { return strings.ToUpper(m.cfg.BridgePrefix) + "-INPUT" }

// hostAccepts are env's ACCEPT rules in the host chain.
func hostAccepts(bridge string, gateway net.IP) [][]string {
	gw := gateway.String() + "/32"
	return [][]string{
		{"-i", bridge, "-d", gw, "-p", "tcp", "--dport", gatewayPort, "-j", "ACCEPT"},
		{"-i", bridge, "-d", gw, "-p", "udp", "--dport", dnsPort, "-j", "ACCEPT"},
		{"-i", bridge, "-d", gw, "-p", "tcp", "--dport", dnsPort, "-j", "ACCEPT"},
	}
}

// ensureHostRules installs the host chain, its jump from INPUT and env's
// exceptions. Every step checks before it adds, so it is safe at every
// start and after someone flushed part of it.
func (m *Manager) ensureHostRules(ctx context.Context, bridge string, gateway net.IP) error {
	chain := m.hostChain()
	if m.iptables(ctx, "-t", "filter", "-n", "-L", chain) != nil {
		if err := m.iptables(ctx, "-t", "filter", "-N", chain); err != nil {
			return err
		}
	}
	if err := m.ensureRule(ctx, chain, false, "-j", "DROP"); err != nil {
		return err
	}
	for _, rule := range hostAccepts(bridge, gateway) {
		if err := m.ensureRule(ctx, chain, true, rule...); err != nil {
			return err
		}
	}
	// Inserted last so it is on top whatever the order of the others.
	if err := m.ensureRule(ctx, chain, true, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"); err != nil {
		return err
	}
	return m.ensureRule(ctx, "INPUT", true, "-i", bridge, "-j", chain)
}

// removeHostRules deletes env's jump and exceptions; the chain and its
// DROP stay for the other environments.
func (m *Manager) removeHostRules(ctx context.Context, bridge string, gateway net.IP) error {
	chain := m.hostChain()
	rules := [][]string{{"INPUT", "-i", bridge, "-j", chain}}
	for _, rule := range hostAccepts(bridge, gateway) {
		rules = append(rules, append([]string{chain}, rule...))
	}
	for _, rule := range rules {
		if m.iptables(ctx, append([]string{"-t", "filter", "-C"}, rule...)...) != nil {
			continue
		}
		if err := m.iptables(ctx, append([]string{"-t", "filter", "-D"}, rule...)...); err != nil {
			return err
		}
	}
	return nil
}
