package cni

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestInstancesReachOnlyTheirOwnGatewayPorts: from an instance, the host
// answers only on its own bridge's address, ports 80 and 53; every other
// host port and the other environment's gateway address are dropped. The
// rules are installed once however often they are ensured, and an
// environment's go with it.
func TestInstancesReachOnlyTheirOwnGatewayPorts(t *testing.T) {
	cfg := testConfig(t, "10.250.112.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	a, err := m.Attach(ctx, "a1", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Attach(ctx, "b1", "beta")
	if err != nil {
		t.Fatal(err)
	}
	_, _, betaBridge, _ := m.EnsureEnvironment(ctx, "beta")
	listen := func(addr string) int {
		t.Helper()
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatalf("listen on the host at %s: %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, "host")
				c.Close()
			}
		}()
		return ln.Addr().(*net.TCPAddr).Port
	}
	listen(net.JoinHostPort(a.Gateway.String(), gatewayPort))
	listen(net.JoinHostPort(b.Gateway.String(), gatewayPort))
	other := listen("0.0.0.0:0")

	if got, err := dialFromNetNS(a.NetNSPath, a.Gateway, 80, 3*time.Second); err != nil || got != "host" {
		t.Errorf("alpha → its own gateway address :80 = %q, %v; want host", got, err)
	}
	if got, err := dialFromHost(a.Gateway, other); err != nil || got != "host" {
		t.Fatalf("host → its own port %d = %q, %v (test cannot tell the rules work)", other, got, err)
	}
	for _, c := range []struct {
		what string
		ip   net.IP
		port int
	}{
		{"another host port on its own gateway address", a.Gateway, other},
		{"beta's gateway address :80", b.Gateway, 80},
		{"another host port on beta's gateway address", b.Gateway, other},
	} {
		if got, err := dialFromNetNS(a.NetNSPath, c.ip, c.port, 500*time.Millisecond); err == nil {
			t.Errorf("alpha → %s connected and read %q; want it dropped", c.what, got)
		} else if !strings.Contains(err.Error(), "timeout") {
			t.Errorf("alpha → %s: %v; want a timeout (dropped, not refused)", c.what, err)
		}
	}

	// Ensuring again, in this manager or a new one, adds nothing.
	before := chainRules(t, m.hostChain())
	if _, _, _, err := newManager(t, cfg).EnsureEnvironment(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if after := chainRules(t, m.hostChain()); after != before {
		t.Errorf("rules changed on a second EnsureEnvironment:\n%s\nthen\n%s", before, after)
	}

	if err := m.Detach(ctx, "b1", "beta"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveEnvironment(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if rules := chainRules(t, m.hostChain()); strings.Contains(rules, b.Gateway.String()) {
		t.Errorf("beta's host rules outlived it:\n%s", rules)
	}
	if rules := chainRules(t, "INPUT"); strings.Contains(rules, "-i "+betaBridge+" ") {
		t.Errorf("beta's jump outlived it:\n%s", rules)
	}
}

func chainRules(t *testing.T, chain string) string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "filter", "-S", chain).Output()
	if err != nil {
		t.Fatalf("iptables -S %s: %v", chain, err)
	}
	return string(out)
}
