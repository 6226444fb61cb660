package egress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	v1 "berth.dev/berth/api/v1"
)

// fakeNetworks is a fixed set of environment subnets, changeable by tests.
type fakeNetworks struct {
	mu      sync.Mutex
	subnets map[string]netip.Prefix
}

func (f *fakeNetworks) Subnets() map[string]netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]netip.Prefix, len(f.subnets))
	for k, v := range f.subnets {
		out[k] = v
	}
	return out
}

type fakeDoors map[string]string

func (d fakeDoors) Addr(env string) string { return d[env] }

// hostAddrs stand for the host's interfaces: loopback, the two bridges'
// gateway addresses and a public address of its own.
var hostAddrs = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
	netip.MustParseAddr("10.89.0.1"), netip.MustParseAddr("10.89.1.1"),
	netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:1::7"),
}

func newEgress(t testing.TB, doors Doors, mutate func(*Config)) (*Egress, *fakeNetworks) {
	t.Helper()
	nets := &fakeNetworks{subnets: map[string]netip.Prefix{
		"alpha": netip.MustParsePrefix("10.89.0.0/24"),
		"beta":  netip.MustParsePrefix("10.89.1.0/24"),
	}}
	cfg := Config{
		Networks:  nets,
		Doors:     doors,
		HostAddrs: func() ([]netip.Addr, error) { return hostAddrs, nil },
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, nets
}

func TestAllowed(t *testing.T) {
	e, nets := newEgress(t, nil, func(c *Config) { c.Deny = []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")} })
	for _, c := range []struct {
		env, addr string
		ok        bool
	}{
		{"alpha", "10.89.0.5", true},             // its own instance
		{"alpha", "10.89.1.5", false},            // beta's instance
		{"beta", "10.89.0.5", false},             // and the other way
		{"", "10.89.0.5", false},                 // no environment owns it for the platform
		{"alpha", "10.89.0.1", false},            // its own bridge's gateway address: the host
		{"alpha", "10.89.1.1", false},            // beta's gateway address
		{"alpha", "127.0.0.1", false},            // loopback
		{"alpha", "127.3.4.5", false},            // all of 127/8
		{"alpha", "0.0.0.0", false},              // unspecified reaches the host
		{"alpha", "0.1.2.3", false},              // "this network"
		{"alpha", "169.254.169.254", false},      // cloud metadata
		{"alpha", "100.100.100.200", false},      // another cloud's metadata
		{"alpha", "224.0.0.251", false},          // multicast
		{"alpha", "255.255.255.255", false},      // broadcast
		{"alpha", "203.0.113.7", false},          // the host's own public address
		{"alpha", "192.168.50.9", false},         // Config.Deny
		{"alpha", "::ffff:127.0.0.1", false},     // loopback, mapped
		{"alpha", "::ffff:10.89.1.5", false},     // beta, mapped
		{"alpha", "::1", false},                  // IPv6 loopback
		{"alpha", "::", false},                   // IPv6 unspecified
		{"alpha", "fe80::1", false},              // IPv6 link-local
		{"alpha", "fe80::1%eth0", false},         // with a zone
		{"alpha", "fd00:ec2::254", false},        // unique local (a cloud's metadata)
		{"alpha", "ff02::1", false},              // IPv6 multicast
		{"alpha", "2002:7f00:1::", false},        // 6to4 of 127.0.0.1
		{"alpha", "2001:0:7f00:1::", false},      // Teredo
		{"alpha", "2001:db8:1::7", false},        // the host's own IPv6 address
		{"alpha", "93.184.215.14", true},         // a public address
		{"", "93.184.215.14", true},              // for the platform too
		{"alpha", "192.168.1.20", true},          // the LAN, as a container reaches it
		{"alpha", "2606:2800:21f:cb07::1", true}, // public IPv6
		{"gamma", "10.89.0.5", false},            // an environment not (yet) known
		{"alpha", "10.89.2.5", true},             // not an environment's (yet): see below
	} {
		err := e.Allowed(c.env, netip.MustParseAddr(c.addr))
		if (err == nil) != c.ok {
			t.Errorf("Allowed(%q, %s) = %v; want allowed=%v", c.env, c.addr, err, c.ok)
		}
		if err != nil && v1.KindOf(err) != v1.ErrForbidden {
			t.Errorf("Allowed(%q, %s): kind %s, want Forbidden", c.env, c.addr, v1.KindOf(err))
		}
	}
	// A subnet given to a new environment counts at the next check.
	nets.mu.Lock()
	nets.subnets["gamma"] = netip.MustParsePrefix("10.89.2.0/24")
	nets.mu.Unlock()
	if err := e.Allowed("alpha", netip.MustParseAddr("10.89.2.5")); err == nil {
		t.Error("alpha may reach gamma's new subnet")
	}

	// If the host's addresses cannot be listed, nothing is allowed.
	broken, _ := newEgress(t, nil, func(c *Config) {
		c.HostAddrs = func() ([]netip.Addr, error) { return nil, errors.New("netlink says no") }
	})
	if err := broken.Allowed("alpha", netip.MustParseAddr("93.184.215.14")); err == nil {
		t.Error("allowed without knowing the host's addresses")
	}
}

// target is a loopback server that counts what reaches it.
type target struct {
	*httptest.Server
	hits atomic.Int32
	host atomic.Value
}

func newTarget(t *testing.T, h http.HandlerFunc) *target {
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		tg.host.Store(r.Host)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "secret")
	}))
	t.Cleanup(tg.Close)
	return tg
}

func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func wantForbidden(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: connected; want refused", what)
		return
	}
	if v1.KindOf(err) != v1.ErrForbidden {
		t.Errorf("%s: %v (kind %s); want Forbidden", what, err, v1.KindOf(err))
	}
}

// Connections to the host itself are refused at connect, whatever the URL
// looks like, and the target never sees a request.
func TestClientRefusesTheHost(t *testing.T) {
	secret := newTarget(t, nil)
	e, _ := newEgress(t, nil, nil)
	port := secret.Listener.Addr().(*net.TCPAddr).Port
	for _, env := range []string{"alpha", ""} {
		for _, u := range []string{
			secret.URL,
			"http://localhost.:" + itoa(port) + "/",
			"http://[::ffff:127.0.0.1]:" + itoa(port) + "/",
			"http://0.0.0.0:" + itoa(port) + "/",
		} {
			_, _, err := get(t.Context(), e.Client(env), u)
			if strings.HasPrefix(u, "http://localhost.") {
				// A bare name is a platform name: refused (no door) before
				// any resolution.
				if err == nil {
					t.Errorf("%q: %s connected", env, u)
				}
				continue
			}
			wantForbidden(t, env+" → "+u, err)
		}
	}
	if n := secret.hits.Load(); n != 0 {
		t.Errorf("the host's listener got %d requests", n)
	}
}

// A redirect is dialled again, so checked again: an allowed server cannot
// bounce a call onto the host.
func TestRedirectToTheHostIsRefused(t *testing.T) {
	secret := newTarget(t, nil)
	bouncer := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, secret.URL+"/admin", http.StatusFound)
	})
	// The bouncer is alpha's own service, reached through alpha's door.
	e, _ := newEgress(t, fakeDoors{"alpha": bouncer.Listener.Addr().String()}, nil)
	_, _, err := get(t.Context(), e.Client("alpha"), "http://bouncer/")
	wantForbidden(t, "redirect to loopback", err)
	if bouncer.hits.Load() != 1 {
		t.Errorf("the bouncer got %d requests; want 1", bouncer.hits.Load())
	}
	if secret.hits.Load() != 0 {
		t.Errorf("the redirect reached the host's listener")
	}
}

// Platform names go to the environment's own gateway listener with their
// Host intact; the platform itself (no environment) has no door, and only
// plain http on port 80 is a platform name's.
func TestPlatformNamesGoThroughTheDoor(t *testing.T) {
	door := newTarget(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "door of alpha") })
	e, _ := newEgress(t, fakeDoors{"alpha": door.Listener.Addr().String()}, nil)
	for _, host := range []string{"orders", "orders.alpha", "orders.beta", "orders.alpha.berth.localhost", "ORDERS.Alpha.Berth.Localhost."} {
		code, body, err := get(t.Context(), e.Client("alpha"), "http://"+host+"/x")
		if err != nil || code != 200 || body != "door of alpha" {
			t.Errorf("alpha → http://%s/x = %d %q %v; want alpha's door", host, code, body, err)
			continue
		}
		if got := door.host.Load(); got != host {
			t.Errorf("alpha → %s arrived with Host %q", host, got)
		}
	}
	for _, c := range []struct{ env, url string }{
		{"", "http://orders/"},
		{"", "http://orders.alpha.berth.localhost/"},
		{"alpha", "http://orders:8080/"},
		{"alpha", "https://orders/"},
		{"beta", "http://orders/"}, // beta has no door here
	} {
		if _, _, err := get(t.Context(), e.Client(c.env), c.url); err == nil {
			t.Errorf("%q → %s connected", c.env, c.url)
		}
	}
	if err := e.CheckURL("alpha", "https://orders/"); v1.KindOf(err) != v1.ErrForbidden {
		t.Errorf("CheckURL(https://orders/) = %v; want Forbidden", err)
	}
}

// A name is checked by the addresses it resolves to when it is dialled, not
// when the URL was accepted: a name that resolves to the host (DNS
// rebinding) or into another environment is refused at connect.
func TestNamesAreCheckedWhenDialled(t *testing.T) {
	secret := newTarget(t, nil)
	port := secret.Listener.Addr().(*net.TCPAddr).Port
	dns := startDNS(t, map[string][]netip.Addr{
		"rebind.example.":   {netip.MustParseAddr("127.0.0.1")},
		"beta.example.":     {netip.MustParseAddr("10.89.1.5")},
		"metadata.example.": {netip.MustParseAddr("169.254.169.254")},
	})
	e, _ := newEgress(t, nil, func(c *Config) {
		c.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "udp", dns)
		}}
	})
	for _, host := range []string{"rebind.example", "beta.example", "metadata.example"} {
		u := "http://" + host + ":" + itoa(port) + "/"
		if err := e.CheckURL("alpha", u); err != nil {
			t.Fatalf("CheckURL(%s) = %v; a name passes until it is resolved", u, err)
		}
		_, _, err := get(t.Context(), e.Client("alpha"), u)
		wantForbidden(t, u, err)
	}
	if secret.hits.Load() != 0 {
		t.Errorf("a rebound name reached the host's listener")
	}
}

func TestTransportsArePerEnvironment(t *testing.T) {
	e, _ := newEgress(t, nil, nil)
	if e.Transport("alpha") == e.Transport("beta") || e.Transport("alpha") == e.Transport("") {
		t.Error("two environments share a transport (and its kept-alive connections)")
	}
	if e.Transport("alpha") != e.Transport("alpha") {
		t.Error("an environment's transport is not reused")
	}
	tr := e.Transport("alpha").(*http.Transport)
	if tr.Proxy != nil {
		t.Error("the transport follows a proxy from the environment")
	}
}

func TestCheckURL(t *testing.T) {
	e, _ := newEgress(t, nil, nil)
	for _, c := range []struct {
		env, url, kind string
	}{
		{"alpha", "https://hooks.example.com/done", ""},
		{"alpha", "http://10.89.0.7:8080/x", ""},
		{"alpha", "http://orders/", ""},
		{"alpha", "http://orders:80/", ""},
		{"alpha", "ftp://example.com/", v1.ErrInvalid},
		{"alpha", "/relative", v1.ErrInvalid},
		{"alpha", "http://:80/", v1.ErrInvalid},
		{"alpha", "http://user:pw@example.com/", v1.ErrInvalid},
		{"alpha", "http://10.89.1.7:8080/x", v1.ErrForbidden},
		{"alpha", "http://127.0.0.1:7070/api/v1/", v1.ErrForbidden},
		{"alpha", "http://[::1]/", v1.ErrForbidden},
		{"alpha", "http://169.254.169.254/latest/meta-data/", v1.ErrForbidden},
		{"alpha", "https://orders/", v1.ErrForbidden},
		{"", "http://orders/", v1.ErrForbidden},
	} {
		err := e.CheckURL(c.env, c.url)
		got := ""
		if err != nil {
			got = v1.KindOf(err)
		}
		if got != c.kind {
			t.Errorf("CheckURL(%q, %q) = %v; want kind %q", c.env, c.url, err, c.kind)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// startDNS serves A and AAAA answers for names on a loopback UDP port and
// returns its address.
func startDNS(t *testing.T, names map[string][]netip.Addr) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			for _, a := range names[strings.ToLower(q.Name.String())] {
				rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
				switch {
				case a.Is4() && q.Type == dnsmessage.TypeA:
					b.AResource(rh, dnsmessage.AResource{A: a.As4()})
				case a.Is6() && q.Type == dnsmessage.TypeAAAA:
					b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}
