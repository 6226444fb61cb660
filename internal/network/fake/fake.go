// Package fake is a network manager that really behaves, for tests that
// must run without root: each environment gets its own /24 of loopback
// (127.B.N.0/24, which Linux routes to lo without any set-up) and each
// attachment its own address in it, so a mock container can listen on
// IP:PORT and the agent's probes and the gateway reach it there, as they
// reach a real instance on its bridge.
//
// It isolates nothing: any process on the host reaches every address.
// Isolation is the real manager's (internal/network/cni) and its tests'.
package fake

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network"
)

// nextBase and startBase hand out address ranges within this process.
var (
	nextBase  atomic.Int64
	startBase = rand.Int64N(254)
)

// nsPrefix starts the namespace path of an attachment: the mock runtime
// reads the instance's address from it (IPOf).
const nsPrefix = "fake-netns:"

// Network is the fake manager. The zero value is not usable: call New.
type Network struct {
	// base is the second octet of every environment's subnet; the third
	// counts environments.
	base int

	mu       sync.Mutex
	envs     map[string]*env
	next     int
	attached map[string]attachment // by id
}

type env struct {
	octet int
	used  [256]bool
}

type attachment struct {
	env string
	ip  net.IP
}

// New makes a fake network whose environments take 127.base.0.0/24,
// 127.base.1.0/24 and so on (base between 1 and 254). Base 0 takes the
// next range of this process, starting at a random one: networks of one
// test binary never share addresses, and two binaries running at once
// (go test runs packages in parallel) rarely do.
func New(base int) *Network {
	if base < 1 || base > 254 {
		base = int(1 + (startBase+nextBase.Add(1))%254)
	}
	return &Network{base: base, envs: map[string]*env{}, attached: map[string]attachment{}}
}

// EnsureEnvironment allocates env's subnet once.
func (n *Network) EnsureEnvironment(_ context.Context, name string) (*net.IPNet, net.IP, string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, err := n.ensure(name)
	if err != nil {
		return nil, nil, "", err
	}
	return &net.IPNet{IP: net.IPv4(127, byte(n.base), byte(e.octet), 0).To4(), Mask: net.CIDRMask(24, 32)},
		net.IPv4(127, byte(n.base), byte(e.octet), 1).To4(), "fake" + fmt.Sprint(e.octet), nil
}

func (n *Network) ensure(name string) (*env, error) {
	if e := n.envs[name]; e != nil {
		return e, nil
	}
	if n.next > 255 {
		return nil, v1.Unavailable("fake network: no subnet left for environment %q", name)
	}
	e := &env{octet: n.next}
	e.used[0], e.used[1], e.used[255] = true, true, true
	n.next++
	n.envs[name] = e
	return e, nil
}

// RemoveEnvironment frees env's subnet; Conflict while attachments remain.
func (n *Network) RemoveEnvironment(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var left []string
	for id, a := range n.attached {
		if a.env == name {
			left = append(left, id)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return v1.Conflict("environment %q still has %d instances attached (%s)", name, len(left), strings.Join(left, ", "))
	}
	delete(n.envs, name)
	return nil
}

// Environments lists those holding a subnet.
func (n *Network) Environments() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.envs))
	for name := range n.envs {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Attach gives id the next free address of its environment; attaching
// again returns the same one.
func (n *Network) Attach(_ context.Context, id, environment string) (network.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.attached[id]; ok {
		return n.attachmentOf(id, a), nil
	}
	e, err := n.ensure(environment)
	if err != nil {
		return network.Attachment{}, err
	}
	for host := 2; host < 255; host++ {
		if !e.used[host] {
			e.used[host] = true
			a := attachment{env: environment, ip: net.IPv4(127, byte(n.base), byte(e.octet), byte(host)).To4()}
			n.attached[id] = a
			return n.attachmentOf(id, a), nil
		}
	}
	return network.Attachment{}, v1.Unavailable("fake network: environment %q is full", environment)
}

func (n *Network) attachmentOf(id string, a attachment) network.Attachment {
	gw := append(net.IP(nil), a.ip...)
	gw[3] = 1
	return network.Attachment{
		NetNSPath: nsPrefix + a.ip.String() + ":" + id,
		IP:        append(net.IP(nil), a.ip...),
		Gateway:   gw,
		DNS:       network.DNSConfig{Nameservers: []string{gw.String()}, Search: []string{a.env + ".berth.localhost"}},
	}
}

// Detach frees id's address; a missing id is not an error.
func (n *Network) Detach(_ context.Context, id, _ string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.attached[id]
	if !ok {
		return nil
	}
	delete(n.attached, id)
	if e := n.envs[a.env]; e != nil {
		e.used[a.ip[3]] = false
	}
	return nil
}

// Lookup returns id's attachment; NotFound if absent.
func (n *Network) Lookup(_ context.Context, id, _ string) (network.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.attached[id]
	if !ok {
		return network.Attachment{}, v1.NotFound("no attachment %q", id)
	}
	return n.attachmentOf(id, a), nil
}

// GC detaches every attachment not kept.
func (n *Network) GC(ctx context.Context, keep func(id string) bool) error {
	n.mu.Lock()
	var drop []string
	for id := range n.attached {
		if !keep(id) {
			drop = append(drop, id)
		}
	}
	n.mu.Unlock()
	for _, id := range drop {
		_ = n.Detach(ctx, id, "")
	}
	return nil
}

// Attached reports whether id holds an address (for tests).
func (n *Network) Attached(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.attached[id]
	return ok
}

// IPOf reads the instance address out of a fake namespace path; ok is
// false for any other path.
func IPOf(netnsPath string) (net.IP, bool) {
	rest, ok := strings.CutPrefix(netnsPath, nsPrefix)
	if !ok {
		return nil, false
	}
	ip, _, _ := strings.Cut(rest, ":")
	parsed := net.ParseIP(ip)
	return parsed, parsed != nil
}
