package cni

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// The isolation chain (one per bridge prefix, e.g. BERTH-ISOLATION) holds:
//
//	-i berthN -o berthN -j RETURN     one per environment, inserted at the top
//	-i berth+ -o berth+ -j DROP
//	-i berth+ -d 169.254.0.0/16 -j DROP       link-local: cloud metadata
//	-i berth+ -d 100.100.100.200/32 -j DROP   another cloud's metadata
//
// and is jumped to from FORWARD and, as the firewall plugin's admin chain,
// from the top of CNI-FORWARD, ahead of the plugin's per-instance ACCEPTs.
// Traffic inside one environment stays on its bridge (and only reaches
// FORWARD via br_netfilter, which the RETURN lets through); traffic routed
// from one berth bridge to another is dropped, and so is traffic to the
// link-local range, where the clouds' instance metadata services hand out
// the host's credentials (the platform's own outgoing calls, package egress,
// refuse the same addresses). Traffic from the host (OUTPUT) and to the rest
// of the outside world is not touched.

func (m *Manager) iptables(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, m.iptablesPath, append([]string{"-w"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// ensureRule adds rule to chain (at the top when insert) unless it is there.
func (m *Manager) ensureRule(ctx context.Context, chain string, insert bool, rule ...string) error {
	if m.iptables(ctx, append([]string{"-t", "filter", "-C", chain}, rule...)...) == nil {
		return nil
	}
	op := []string{"-t", "filter", "-A", chain}
	if insert {
		op = []string{"-t", "filter", "-I", chain, "1"}
	}
	return m.iptables(ctx, append(op, rule...)...)
}

// metadataRanges are never forwarded from an instance: link-local, where
// most clouds' metadata service answers (169.254.169.254), and the one
// cloud that put its own elsewhere.
var metadataRanges = []string{"169.254.0.0/16", "100.100.100.200/32"}

// ensureIsolation installs the rules that keep bridge's traffic away from
// every other environment's bridge.
func (m *Manager) ensureIsolation(ctx context.Context, bridge string) error {
	chain := m.isolationChain
	// -N fails when the chain exists; -L tells the two cases apart.
	if m.iptables(ctx, "-t", "filter", "-n", "-L", chain) != nil {
		if err := m.iptables(ctx, "-t", "filter", "-N", chain); err != nil {
			return err
		}
	}
	wildcard := m.cfg.BridgePrefix + "+"
	if err := m.ensureRule(ctx, chain, false, "-i", wildcard, "-o", wildcard, "-j", "DROP"); err != nil {
		return err
	}
	for _, dst := range metadataRanges {
		if err := m.ensureRule(ctx, chain, false, "-i", wildcard, "-d", dst, "-j", "DROP"); err != nil {
			return err
		}
	}
	if err := m.ensureRule(ctx, chain, true, "-i", bridge, "-o", bridge, "-j", "RETURN"); err != nil {
		return err
	}
	return m.ensureRule(ctx, "FORWARD", true, "-j", chain)
}

// removeIsolation forgets bridge's RETURN rule; the chain and its DROP stay
// for the other environments.
func (m *Manager) removeIsolation(ctx context.Context, bridge string) error {
	rule := []string{"-i", bridge, "-o", bridge, "-j", "RETURN"}
	if m.iptables(ctx, append([]string{"-t", "filter", "-C", m.isolationChain}, rule...)...) != nil {
		return nil
	}
	return m.iptables(ctx, append([]string{"-t", "filter", "-D", m.isolationChain}, rule...)...)
}

// masquerade is one of the bridge plugin's per-instance NAT rules: from
// the instance's address to its chain, tagged with network and id.
type masquerade struct {
	network, id, source, chain string
}

// comment is the plugin's tag, as it wrote it.
func (r masquerade) comment() string { return fmt.Sprintf("name: %q id: %q", r.network, r.id) }

// masqueradeRE reads a tagged rule as -S prints it (the tag quoted as %q
// quotes it; network names and ids hold no quotes).
var masqueradeRE = regexp.MustCompile(`^-A POSTROUTING -s (\S+) -m comment --comment "name: \\"([^"\\]+)\\" id: \\"([^"\\]+)\\"" -j (CNI-\S+)$`)

// masquerades lists id's masquerade rules, in any network.
func (m *Manager) masquerades(ctx context.Context, id string) ([]masquerade, error) {
	out, err := exec.CommandContext(ctx, m.iptablesPath, "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return nil, fmt.Errorf("list nat POSTROUTING: %w", err)
	}
	var rules []masquerade
	for _, line := range strings.Split(string(out), "\n") {
		if f := masqueradeRE.FindStringSubmatch(line); f != nil && f[3] == id {
			rules = append(rules, masquerade{network: f[2], id: f[3], source: f[1], chain: f[4]})
		}
	}
	return rules, nil
}

// removeMasquerade deletes the bridge plugin's per-instance NAT rules and
// chain for id in network netName. The plugin cannot always do that
// itself: its DEL reads the address from the interface, so a DEL after the
// namespace was lost leaves them behind; and a rule of an earlier
// attachment under the same id that no DEL ever undid (one whose plugins
// ran on after a killed server, which never recorded it) still jumps to
// the id's chain, so the plugin's own later DEL fails to delete that chain.
// Rules are deleted by their text, not their number, which other CNI
// users' rules shift meanwhile.
func (m *Manager) removeMasquerade(ctx context.Context, netName, id string) error {
	rules, err := m.masquerades(ctx, id)
	if err != nil {
		return err
	}
	chains := map[string]bool{}
	for _, r := range rules {
		if r.network != netName {
			continue
		}
		if err := m.iptables(ctx, "-t", "nat", "-D", "POSTROUTING", "-s", r.source, "-m", "comment", "--comment", r.comment(), "-j", r.chain); err != nil {
			return err
		}
		chains[r.chain] = true
	}
	for chain := range chains {
		if err := m.iptables(ctx, "-t", "nat", "-F", chain); err != nil {
			return err
		}
		if err := m.iptables(ctx, "-t", "nat", "-X", chain); err != nil {
			return err
		}
	}
	return nil
}

// removeFirewallRules deletes the firewall plugin's ACCEPT rules for ip
// from its chain, those it makes for each instance.
func (m *Manager) removeFirewallRules(ctx context.Context, ip string) error {
	for _, rule := range [][]string{
		{"-d", ip + "/32", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-s", ip + "/32", "-j", "ACCEPT"},
	} {
		if m.iptables(ctx, append([]string{"-t", "filter", "-C", firewallChain}, rule...)...) != nil {
			continue
		}
		if err := m.iptables(ctx, append([]string{"-t", "filter", "-D", firewallChain}, rule...)...); err != nil {
			return err
		}
	}
	return nil
}

// firewallChain is the firewall plugin's chain, every CNI user's.
const firewallChain = "CNI-FORWARD"
