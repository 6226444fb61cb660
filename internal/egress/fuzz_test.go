package egress

import (
	"net/netip"
	"net/url"
	"testing"
)

// FuzzCheckURL: whatever a user sends as a callback or task URL, CheckURL
// does not panic, and a URL it accepts whose host is an address never names
// the host, another environment or a special range.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/done", "http://10.89.1.5:8080/", "http://[::ffff:127.0.0.1]/",
		"http://orders/", "http://0x7f000001/", "http://[fe80::1%25eth0]:80/", "http://user@1.2.3.4/",
		"HTTP://EXAMPLE.COM", "http://%31%32%37.0.0.1/", "http://127.1/", "http://[::]:80/",
	} {
		f.Add(s)
	}
	e, _ := newEgress(f, nil, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		err := e.CheckURL("alpha", raw)
		if err != nil {
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, perr)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
		if a, aerr := netip.ParseAddr(u.Hostname()); aerr == nil {
			checkAllowedAddr(t, a)
		}
	})
}

// FuzzAllowed: no address Allowed lets alpha reach is loopback, link-local,
// multicast, unspecified, the host's, or beta's; and an IPv4 address is
// decided the same in its IPv4-mapped IPv6 form.
func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"10.89.0.5", "10.89.1.5", "127.0.0.1", "169.254.169.254", "::ffff:10.89.1.1", "2001:db8:1::7", "93.184.215.14", "fe80::1"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	e, _ := newEgress(f, nil, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		err := e.Allowed("alpha", a)
		if a.Is4In6() || a.Is4() {
			v4 := a.Unmap()
			mapped := netip.AddrFrom16(v4.As16())
			if (e.Allowed("alpha", v4) == nil) != (e.Allowed("alpha", mapped) == nil) {
				t.Fatalf("%s and %s are decided differently", v4, mapped)
			}
		}
		if err == nil {
			checkAllowedAddr(t, a)
		}
	})
}

func checkAllowedAddr(t *testing.T, a netip.Addr) {
	t.Helper()
	u := a.Unmap().WithZone("")
	if u.IsLoopback() || u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() || u.IsMulticast() || u.IsUnspecified() ||
		u.IsInterfaceLocalMulticast() {
		t.Fatalf("allowed special address %s", a)
	}
	if netip.MustParsePrefix("10.89.1.0/24").Contains(u) {
		t.Fatalf("alpha allowed beta's address %s", a)
	}
	if netip.MustParsePrefix("0.0.0.0/8").Contains(u) {
		t.Fatalf("allowed %s in 0.0.0.0/8", a)
	}
	for _, h := range hostAddrs {
		if h == u {
			t.Fatalf("allowed the host's own address %s", a)
		}
	}
	if u.Is6() && u.IsPrivate() {
		t.Fatalf("allowed unique-local %s", a)
	}
}
