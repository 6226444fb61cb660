package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestNoIPv6BetweenInstancesAndHost: the host rules are IPv4 only, so
// neither the bridge nor the instance has any IPv6 address, link-local
// included. Both directions: an instance cannot reach a host service
// listening on [::] through the bridge's link-local address, and the host
// cannot reach an instance's [::] listener through its.
func TestNoIPv6BetweenInstancesAndHost(t *testing.T) {
	if _, err := os.Stat(ipv6Conf); err != nil {
		t.Skip("kernel without IPv6")
	}
	cfg := testConfig(t, "10.250.128.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	a, err := m.Attach(ctx, "a1", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	_, _, bridge, _ := m.EnsureEnvironment(ctx, "alpha")

	// What the kernel would have given each side (EUI-64 from the MAC) and
	// whatever IPv6 addresses they actually have.
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	bridgeAddrs := append(v6Addrs(t, br), linkLocal(br.Attrs().HardwareAddr))
	var instAddrs []netip.Addr
	// The zone inside the namespace is eth0's index there: Go's cache of
	// interface names is the host's.
	var eth0Zone string
	if err := inNetNS(a.NetNSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		eth0Zone = strconv.Itoa(eth0.Attrs().Index)
		instAddrs = append(v6Addrs(t, eth0), linkLocal(eth0.Attrs().HardwareAddr))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(bridgeAddrs) > 1 || len(instAddrs) > 1 {
		t.Errorf("IPv6 addresses: bridge %v, instance %v; want none", bridgeAddrs[:len(bridgeAddrs)-1], instAddrs[:len(instAddrs)-1])
	}
	for _, ifc := range []string{bridge} {
		if b, _ := os.ReadFile(filepath.Join(ipv6Conf, ifc, "disable_ipv6")); strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s: disable_ipv6 = %q, want 1", ifc, b)
		}
	}

	// Host → instance.
	var inside net.Listener
	if err := inNetNS(a.NetNSPath, func() error {
		inside, err = net.Listen("tcp6", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	go acceptAndGreet(inside, "instance")
	port := inside.Addr().(*net.TCPAddr).Port
	for _, ip := range instAddrs {
		if got, err := dial6(ip, bridge, port); err == nil {
			t.Errorf("host → instance at [%s%%%s]:%d read %q; want no IPv6 path", ip, bridge, port, got)
		}
	}

	// Instance → host.
	host, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go acceptAndGreet(host, "host")
	port = host.Addr().(*net.TCPAddr).Port
	for _, ip := range bridgeAddrs {
		var got string
		err := inNetNS(a.NetNSPath, func() error {
			var err error
			got, err = dial6(ip, eth0Zone, port)
			return err
		})
		if err == nil {
			t.Errorf("instance → host at [%s%%eth0]:%d read %q; want no IPv6 path", ip, port, got)
		}
	}
}

// TestInstancesCannotReachLinkLocal: what an instance sends to the
// link-local range (the clouds' metadata services) is dropped on its way
// out, while the host itself still reaches it. A namespace of the test
// plays the metadata service behind a link-local address routed by the
// host.
func TestInstancesCannotReachLinkLocal(t *testing.T) {
	cfg := testConfig(t, "10.250.144.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	a, err := m.Attach(ctx, "a1", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	metaNS := filepath.Join(cfg.DataDir, "netns", "metadata")
	if err := createNetNS(metaNS); err != nil {
		t.Fatal(err)
	}
	// Not named with the bridge prefix: the isolation chain would take the
	// host end for one of the environments' bridges.
	suffix := strings.TrimPrefix(cfg.BridgePrefix, "bt")
	hostEnd, metaEnd := "mdh"+suffix, "mdp"+suffix
	hostIP, metaIP := netip.MustParsePrefix("169.254.77.1/30"), netip.MustParsePrefix("169.254.77.2/30")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostEnd}, PeerName: metaEnd}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(hostEnd); err == nil {
			netlink.LinkDel(l)
		}
	})
	setUp := func(name string, p netip.Prefix) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	}
	peer, err := netlink.LinkByName(metaEnd)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(metaNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = netlink.LinkSetNsFd(peer, fd)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	if err := setUp(hostEnd, hostIP); err != nil {
		t.Fatal(err)
	}
	if err := inNetNS(metaNS, func() error { return setUp(metaEnd, metaIP) }); err != nil {
		t.Fatal(err)
	}
	port := serveIn(t, metaNS, "metadata")
	target := net.IP(metaIP.Addr().AsSlice())

	if got, err := dialFromHost(target, port); err != nil || got != "metadata" {
		t.Fatalf("host → metadata = %q, %v (test cannot tell the rule works)", got, err)
	}
	if got, err := dialFromNetNS(a.NetNSPath, target, port, 500*time.Millisecond); err == nil {
		t.Errorf("instance → %s:%d read %q; want dropped", target, port, got)
	}

	// Without the rule the same connection goes through: the rule, not an
	// accident of routing, is what drops it.
	rule := []string{"-i", cfg.BridgePrefix + "+", "-d", "169.254.0.0/16", "-j", "DROP"}
	if err := m.iptables(ctx, append([]string{"-t", "filter", "-D", m.isolationChain}, rule...)...); err != nil {
		t.Fatal(err)
	}
	got, err := dialFromNetNS(a.NetNSPath, target, port, 3*time.Second)
	_, _, bridge, _ := m.EnsureEnvironment(ctx, "alpha")
	if rerr := m.ensureIsolation(ctx, bridge); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || got != "metadata" {
		t.Errorf("instance → metadata without the rule = %q, %v; want metadata (test cannot tell the rule works)", got, err)
	}
}

// TestSubnetsFollowAllocations: Subnets, which every outgoing call of the
// platform reads, lists each environment from its allocation until it is
// removed, in this manager and in a new one on the same directory.
func TestSubnetsFollowAllocations(t *testing.T) {
	cfg := testConfig(t, "10.250.160.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	if len(m.Subnets()) != 0 {
		t.Fatalf("Subnets of a new manager = %v", m.Subnets())
	}
	subnet, _, _, err := m.EnsureEnvironment(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParsePrefix(subnet.String())
	if got := m.Subnets()["alpha"]; got != want {
		t.Errorf("Subnets()[alpha] = %v; want %v", got, want)
	}
	if got := newManager(t, cfg).Subnets()["alpha"]; got != want {
		t.Errorf("a new manager's Subnets()[alpha] = %v; want %v", got, want)
	}
	if err := m.RemoveEnvironment(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if got, ok := m.Subnets()["alpha"]; ok {
		t.Errorf("a removed environment's subnet is still listed: %v", got)
	}
}

func v6Addrs(t *testing.T, l netlink.Link) []netip.Addr {
	t.Helper()
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if na, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, na)
		}
	}
	return out
}

// linkLocal is the EUI-64 link-local address the kernel derives from mac.
func linkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	copy(b[8:11], mac[0:3])
	b[8] ^= 0x02
	b[11], b[12] = 0xff, 0xfe
	copy(b[13:16], mac[3:6])
	return netip.AddrFrom16(b)
}

func dial6(ip netip.Addr, zone string, port int) (string, error) {
	addr := net.JoinHostPort(ip.WithZone(zone).String(), strconv.Itoa(port))
	c, err := net.DialTimeout("tcp6", addr, time.Second)
	if err != nil {
		return "", err
	}
	return readGreeting(c)
}

func acceptAndGreet(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) || err != nil {
			return
		}
		fmt.Fprintln(c, name)
		c.Close()
	}
}
