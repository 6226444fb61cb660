package cni

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	v1 "berth.dev/berth/api/v1"
)

var envNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func validateEnvironment(env string) error {
	if !envNameRE.MatchString(env) {
		return v1.FieldError("environment", "%q is not a valid environment name (a DNS label)", env)
	}
	return nil
}

// envNet is an environment's network, ready for attachments.
type envNet struct {
	name    string
	subnet  *net.IPNet
	gateway net.IP
	bridge  string
	// confs are the CNI network lists an instance is attached with, in order.
	loopback *libcni.NetworkConfigList
	bridged  *libcni.NetworkConfigList
}

// EnsureEnvironment allocates env's subnet and bridge if it has none yet,
// creates the bridge with the gateway address and installs its isolation
// rules. It is idempotent, and the allocation survives restarts.
func (m *Manager) EnsureEnvironment(ctx context.Context, env string) (subnet *net.IPNet, gateway net.IP, bridge string, err error) {
	n, err := m.ensureEnv(ctx, env)
	if err != nil {
		return nil, nil, "", err
	}
	s := *n.subnet
	return &s, append(net.IP(nil), n.gateway...), n.bridge, nil
}

// ensureEnv returns env's network, setting it up on first use in this
// process. The host side is re-checked once per process because a reboot
// removes bridges and iptables rules but not the allocation file.
func (m *Manager) ensureEnv(ctx context.Context, env string) (*envNet, error) {
	if err := validateEnvironment(env); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.ready[env]; n != nil {
		return n, nil
	}
	a, ok := m.alloc.Environments[env]
	if !ok {
		var err error
		if a, err = m.allocate(); err != nil {
			return nil, err
		}
		m.alloc.Environments[env] = a
		if err := writeJSONAtomic(m.allocPath(), m.alloc); err != nil {
			delete(m.alloc.Environments, env)
			return nil, fmt.Errorf("persist subnet of environment %q: %w", env, err)
		}
		m.publishSubnets()
		m.log.Info("allocated environment network", "environment", env, "subnet", a.Subnet, "bridge", a.Bridge)
	}
	n, err := m.buildEnvNet(env, a)
	if err != nil {
		return nil, err
	}
	if err := ensureBridge(n); err != nil {
		return nil, fmt.Errorf("environment %q: %w", env, err)
	}
	if err := m.ensureIsolation(ctx, n.bridge); err != nil {
		return nil, fmt.Errorf("environment %q isolation: %w", env, err)
	}
	if err := m.ensureHostRules(ctx, n.bridge, n.gateway); err != nil {
		return nil, fmt.Errorf("environment %q host rules: %w", env, err)
	}
	m.ready[env] = n
	return n, nil
}

// allocate picks the lowest /24 of the pool that no environment holds and no
// host interface already uses (another Berth, a VPN, a leftover bridge).
func (m *Manager) allocate() (envAllocation, error) {
	used := make(map[int]bool, len(m.alloc.Environments))
	for _, a := range m.alloc.Environments {
		used[a.Index] = true
	}
	hostAddrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return envAllocation{}, fmt.Errorf("list host addresses: %w", err)
	}
	base := binary.BigEndian.Uint32(m.pool.IP.To4())
	for i := 0; i < m.poolSize; i++ {
		if used[i] {
			continue
		}
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+uint32(i)<<8)
		subnet := &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}
		taken := false
		for _, ha := range hostAddrs {
			if subnet.Contains(ha.IP) || ha.IPNet.Contains(ip) {
				taken = true
				break
			}
		}
		if taken {
			continue
		}
		gw := make(net.IP, 4)
		binary.BigEndian.PutUint32(gw, base+uint32(i)<<8+1)
		return envAllocation{
			Index:   i,
			Subnet:  subnet.String(),
			Gateway: gw.String(),
			Bridge:  m.cfg.BridgePrefix + strconv.Itoa(i),
		}, nil
	}
	return envAllocation{}, v1.Unavailable("subnet pool %s is exhausted", m.pool)
}

func (m *Manager) buildEnvNet(env string, a envAllocation) (*envNet, error) {
	_, subnet, err := net.ParseCIDR(a.Subnet)
	if err != nil {
		return nil, fmt.Errorf("environment %q: stored subnet: %w", env, err)
	}
	n := &envNet{name: env, subnet: subnet, gateway: net.ParseIP(a.Gateway).To4(), bridge: a.Bridge}
	netName := m.cfg.BridgePrefix + "-" + env
	conf := map[string]any{
		"cniVersion": cniVersion,
		"name":       netName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      a.Bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": a.Subnet, "gateway": a.Gateway}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": m.ipamDir(),
				},
			},
			map[string]any{
				"type":                   "firewall",
				"backend":                "iptables",
				"iptablesAdminChainName": m.isolationChain,
			},
		},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	if n.bridged, err = libcni.NetworkConfFromBytes(b); err != nil {
		return nil, fmt.Errorf("environment %q: CNI config: %w", env, err)
	}
	n.loopback = m.loopback
	return n, nil
}

// ensureBridge creates the bridge with the gateway address up front, so the
// host (and later the gateway's listener) can use the address before any
// instance exists, and concurrent first attaches do not race to create it.
func ensureBridge(n *envNet) error {
	link, err := netlink.LinkByName(n.bridge)
	if _, notFound := err.(netlink.LinkNotFoundError); notFound {
		la := netlink.NewLinkAttrs()
		la.Name = n.bridge
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
		link, err = netlink.LinkByName(n.bridge)
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", n.bridge, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return v1.Conflict("%s exists and is not a bridge (%s)", n.bridge, link.Type())
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports and changes it when that port goes: every instance's ARP entry
	// for the gateway then points nowhere, and its traffic to the host
	// stalls for seconds each time a neighbour is removed. A fixed MAC,
	// set explicitly, stops the kernel from ever changing it.
	if mac := bridgeMAC(n.bridge); !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set MAC of bridge %s: %w", n.bridge, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.gateway, Mask: n.subnet.Mask}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("set %s on bridge %s: %w", addr.IPNet, n.bridge, err)
	}
	// No IPv6 on the bridge: the host rules are IPv4 rules, and the
	// bridge's link-local address would otherwise let an instance reach
	// every service the host runs on [::].
	if err := disableIPv6(n.bridge); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", n.bridge, err)
	}
	return nil
}

// RemoveEnvironment deletes env's bridge, isolation and host rules and allocation, so
// its subnet can be given to another environment. It refuses while instances
// are still attached; a missing environment is not an error. The caller must
// not attach to env while this runs (the environment controller owns both).
func (m *Manager) RemoveEnvironment(ctx context.Context, env string) error {
	if err := validateEnvironment(env); err != nil {
		return err
	}
	recs, err := m.records()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Environment == env {
			return v1.Conflict("environment %q still has attached instance %q", env, r.ID)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.alloc.Environments[env]
	if !ok {
		return nil
	}
	if link, err := netlink.LinkByName(a.Bridge); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			return fmt.Errorf("delete bridge %s: %w", a.Bridge, err)
		}
	}
	if err := m.removeIsolation(ctx, a.Bridge); err != nil {
		return err
	}
	if err := m.removeHostRules(ctx, a.Bridge, net.ParseIP(a.Gateway)); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(m.ipamDir(), m.cfg.BridgePrefix+"-"+env)); err != nil {
		return fmt.Errorf("remove IPAM state: %w", err)
	}
	delete(m.alloc.Environments, env)
	m.publishSubnets()
	delete(m.ready, env)
	m.wmu.Lock()
	delete(m.warm, env)
	m.wmu.Unlock()
	if err := writeJSONAtomic(m.allocPath(), m.alloc); err != nil {
		return fmt.Errorf("persist removal of environment %q: %w", env, err)
	}
	m.log.Info("removed environment network", "environment", env, "bridge", a.Bridge)
	return nil
}

// bridgeMAC is a stable, locally administered unicast MAC for a bridge.
func bridgeMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("berth-bridge/" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// Environments lists the environments that hold a subnet, so that the
// environment controller can remove those whose Environment object went
// away while no server was running.
func (m *Manager) Environments() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.alloc.Environments))
	for env := range m.alloc.Environments {
		out = append(out, env)
	}
	sort.Strings(out)
	return out
}

// Subnets returns every environment's subnet, by environment, for the
// policies that must tell environments' addresses apart (package egress).
// It is called at every outgoing connection, so it reads a snapshot rather
// than wait for m.mu, which a first attach holds while it runs iptables.
func (m *Manager) Subnets() map[string]netip.Prefix {
	if p := m.subnets.Load(); p != nil {
		return *p
	}
	return nil
}

// publishSubnets refreshes the snapshot Subnets reads; m.mu is held. The
// map published is never written again.
func (m *Manager) publishSubnets() {
	out := make(map[string]netip.Prefix, len(m.alloc.Environments))
	for env, a := range m.alloc.Environments {
		if p, err := netip.ParsePrefix(a.Subnet); err == nil {
			out[env] = p.Masked()
		}
	}
	m.subnets.Store(&out)
}
