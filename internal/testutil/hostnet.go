package testutil

import (
	"net"
	"os/exec"
	"strings"
)

// RemoveHostNetwork deletes what a server with bridge prefix left on the
// host: its bridges, and every iptables rule jumping to one of its chains
// (INPUT, FORWARD, CNI-FORWARD) and the chains. A real server's rules stay
// on purpose; tests and benchmarks clean up after theirs with this.
func RemoveHostNetwork(prefix string) {
	if links, err := net.Interfaces(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Name, prefix) {
				exec.Command("ip", "link", "del", l.Name).Run()
			}
		}
	}
	chainPrefix := strings.ToUpper(prefix) + "-"
	out, _ := exec.Command("iptables", "-w", "-S").Output()
	var chains []string
	for _, rule := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(rule, "-N "+chainPrefix):
			chains = append(chains, strings.TrimPrefix(rule, "-N "))
		case strings.HasPrefix(rule, "-A ") && strings.Contains(rule, "-j "+chainPrefix):
			// -S prints rules shell-quoted.
			exec.Command("sh", "-c", "iptables -w -D "+strings.TrimPrefix(rule, "-A ")).Run()
		}
	}
	for _, c := range chains {
		exec.Command("iptables", "-w", "-F", c).Run()
		exec.Command("iptables", "-w", "-X", c).Run()
	}
}
