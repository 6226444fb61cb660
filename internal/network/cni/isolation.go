package cni

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
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

// removeMasquerade deletes the bridge plugin's per-instance NAT rules and
// chain for id. The plugin cannot always do that itself: its DEL reads the
// address from the interface, so a DEL after the namespace was lost leaves
// them behind; and a rule of an earlier attachment under the same id that
// no DEL ever undid (one whose plugins ran on after a killed server, which
// never recorded it) still jumps to the id's chain, so the plugin's own
// later DEL fails to delete that chain. Rules are found by the comment the
// plugin tags them with, and deleted by their text, not their number, which
// other CNI users' rules shift meanwhile.
func (m *Manager) removeMasquerade(ctx context.Context, netName, id string) error {
	out, err := exec.CommandContext(ctx, m.iptablesPath, "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return fmt.Errorf("list nat POSTROUTING: %w", err)
	}
	comment := fmt.Sprintf("name: %q id: %q", netName, id)
	// -S quotes the comment as %q does.
	tag := "--comment " + strconv.Quote(comment) + " "
	chains := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A POSTROUTING ") || !strings.Contains(line, tag) {
			continue
		}
		var src, chain string
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "-s":
				src = f[i+1]
			case "-j":
				chain = f[i+1]
			}
		}
		if src == "" || !strings.HasPrefix(chain, "CNI-") {
			continue
		}
		if err := m.iptables(ctx, "-t", "nat", "-D", "POSTROUTING", "-s", src, "-m", "comment", "--comment", comment, "-j", chain); err != nil {
			return err
		}
		chains[chain] = true
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
