package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// names: dev has orders and client; prod has orders and lets dev in.
type names map[string][]string

func (n names) Reachable(from, env, name string) bool {
	if env != from && !(env == "prod" && from == "dev") {
		return false
	}
	return slices.Contains(n[env], name)
}

// resolver asks only addr, over UDP or TCP, the way a container's libc or
// Go runtime would with the resolv.conf the platform writes.
func resolver(addr string, tcp bool) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		if tcp {
			network = "tcp"
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func TestEnvironmentNamesResolveToTheBridgeAddress(t *testing.T) {
	s := New(Config{
		Names:  names{"dev": {"orders", "client"}, "prod": {"orders", "billing"}, "test": {"orders"}},
		Port:   -1,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	defer s.Close()
	// Two loopback addresses stand in for two bridges' gateway addresses.
	devIP, prodIP := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)
	if err := s.Listen(t.Context(), "dev", devIP); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context(), "prod", prodIP); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context(), "dev", devIP); err != nil {
		t.Fatalf("Listen again: %v", err)
	}

	for _, tcp := range []bool{false, true} {
		dev, prod := resolver(s.Addr("dev"), tcp), resolver(s.Addr("prod"), tcp)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		for _, c := range []struct {
			r    *net.Resolver
			from string
			name string
			want net.IP // nil: NXDOMAIN
		}{
			{dev, "dev", "orders.", devIP},
			{dev, "dev", "client.", devIP},
			{dev, "dev", "ORDERS.dev.berth.localhost.", devIP},
			{dev, "dev", "orders.dev.", devIP},
			{prod, "prod", "orders.", prodIP},
			{prod, "prod", "billing.prod.berth.localhost.", prodIP},
			// prod allows dev: the name answers dev's own bridge address,
			// where dev's gateway listener applies the policy again.
			{dev, "dev", "orders.prod.berth.localhost.", devIP},
			{dev, "dev", "billing.", nil},      // prod's, not dev's
			{prod, "prod", "client.", nil},     // dev's
			{prod, "prod", "client.dev.", nil}, // dev does not allow prod
			{prod, "prod", "orders.test.berth.localhost.", nil},
			{dev, "dev", "nothing.", nil},
			{dev, "dev", "example.com.", nil}, // no recursion to the outside
			{dev, "dev", "a.b.c.berth.localhost.", nil},
		} {
			addrs, err := c.r.LookupIP(ctx, "ip4", c.name)
			if c.want == nil {
				var de *net.DNSError
				if !errors.As(err, &de) || !de.IsNotFound {
					t.Errorf("tcp=%v %s: %s = %v, %v; want NXDOMAIN", tcp, c.from, c.name, addrs, err)
				}
				continue
			}
			if err != nil || len(addrs) != 1 || !addrs[0].Equal(c.want) {
				t.Errorf("tcp=%v %s: %s = %v, %v; want %s", tcp, c.from, c.name, addrs, err, c.want)
			}
		}
		// A and AAAA together, as a plain lookup does: the known name must
		// not fail because it has no IPv6 address.
		if addrs, err := dev.LookupHost(ctx, "orders."); err != nil || !slices.Equal(addrs, []string{"127.0.0.1"}) {
			t.Errorf("tcp=%v LookupHost orders = %v, %v; want [127.0.0.1]", tcp, addrs, err)
		}
		cancel()
	}

	prodAddr := s.Addr("prod")
	s.Unlisten("prod")
	if s.Addr("prod") != "" {
		t.Errorf("prod still listening after Unlisten")
	}
	if c, err := net.ListenPacket("udp4", prodAddr); err != nil {
		t.Errorf("prod's address is still taken after Unlisten: %v", err)
	} else {
		c.Close()
	}
}

func TestGarbageIsDropped(t *testing.T) {
	s := New(Config{Names: names{}, Port: -1})
	if out := s.answer("dev", net.IPv4(127, 0, 0, 1), []byte{1, 2, 3}); out != nil {
		t.Errorf("answer to 3 bytes of garbage = %x; want none", out)
	}
}

// An idle TCP client must not hold Unlisten until its read deadline.
func TestUnlistenClosesIdleTCPConnections(t *testing.T) {
	s := New(Config{Names: names{}, Port: -1})
	defer s.Close()
	if err := s.Listen(t.Context(), "dev", net.IPv4(127, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr("dev"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A query answered proves the server has the connection in hand.
	q := []byte{0, 12, 0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 512)); err != nil {
		t.Fatalf("no answer over TCP: %v", err)
	}
	start := time.Now()
	s.Unlisten("dev")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Unlisten took %v with an idle TCP client", d)
	}
}

// Answers are A records of the listen address: anything else is refused
// rather than answered as 0.0.0.0.
func TestListenRefusesANonIPv4Address(t *testing.T) {
	s := New(Config{Names: names{}, Port: -1})
	defer s.Close()
	for _, ip := range []net.IP{nil, net.ParseIP("::1")} {
		if err := s.Listen(context.Background(), "dev", ip); !v1.IsInvalid(err) {
			t.Fatalf("Listen(%v): want Invalid, got %v", ip, err)
		}
	}
}

// platformNames: s3 is the platform's in every environment (its own only),
// with subdomains (virtual-host-style buckets).
type platformNames struct{ names }

func (p platformNames) Reachable(from, env, name string) bool {
	if name == "s3" {
		return from == env
	}
	return p.names.Reachable(from, env, name)
}

func (platformNames) HasSubdomains(name string) bool { return name == "s3" }

func TestPlatformSubdomains(t *testing.T) {
	s := New(Config{Names: platformNames{names{"dev": {"orders"}}}, Port: -1})
	defer s.Close()
	devIP := net.IPv4(127, 0, 0, 1)
	if err := s.Listen(t.Context(), "dev", devIP); err != nil {
		t.Fatal(err)
	}
	r := resolver(s.Addr("dev"), false)
	for name, want := range map[string]bool{
		"s3.dev.berth.localhost.":             true,
		"photos.s3.dev.berth.localhost.":      true,
		"a.b.s3.dev.berth.localhost.":         true,
		"photos.s3.prod.berth.localhost.":     false, // another environment's
		"x.orders.dev.berth.localhost.":       false, // a workload has no subdomains
		"photos.nothing.dev.berth.localhost.": false,
	} {
		addrs, err := r.LookupIP(t.Context(), "ip4", name)
		if got := err == nil && len(addrs) == 1 && addrs[0].Equal(devIP); got != want {
			t.Errorf("%s: %v %v, want answered=%v", name, addrs, err, want)
		}
	}
}

// With any free port, the UDP side's port is taken for TCP too; when a
// TCP socket already holds that number, Listen tries another port rather
// than fail with "address already in use" (a rare flake of every test
// here, on a machine where many tests hold loopback ports).
func TestAnyPortSkipsAPortWhoseTCPTwinIsTaken(t *testing.T) {
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	calls := 0
	orig := listenUDP
	listenUDP = func(ctx context.Context, lc *net.ListenConfig, addr string) (net.PacketConn, error) {
		calls++
		if calls == 1 {
			// The kernel's pick, as it may fall: a port free for UDP
			// whose TCP twin is in use.
			return lc.ListenPacket(ctx, "udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(taken)))
		}
		return orig(ctx, lc, addr)
	}
	defer func() { listenUDP = orig }()

	s := New(Config{Names: names{"dev": {"orders"}}, Port: -1})
	defer s.Close()
	if err := s.Listen(t.Context(), "dev", net.IPv4(127, 0, 0, 1)); err != nil {
		t.Fatalf("Listen with a taken TCP twin: %v", err)
	}
	if calls < 2 || strings.HasSuffix(s.Addr("dev"), ":"+strconv.Itoa(taken)) {
		t.Fatalf("listening on %s after %d tries, want another port than %d", s.Addr("dev"), calls, taken)
	}
	for _, tcp := range []bool{false, true} {
		addrs, err := resolver(s.Addr("dev"), tcp).LookupIP(t.Context(), "ip4", "orders.dev.berth.localhost.")
		if err != nil || len(addrs) != 1 {
			t.Errorf("tcp=%v: %v %v", tcp, addrs, err)
		}
	}
}
