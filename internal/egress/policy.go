package egress

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// Networks is what the policy knows of environments' networks. It is read at
// every connection, so it must be cheap and safe for concurrent use.
type Networks interface {
	// Subnets returns every environment's subnet, by environment name.
	Subnets() map[string]netip.Prefix
}

// Doors says where the gateway serves an environment from inside it.
type Doors interface {
	// Addr is the "ip:port" of env's gateway listener on its bridge, ""
	// when it has none.
	Addr(env string) string
}

// reserved are ranges no call on behalf of a user may reach, whatever the
// configuration says, and why.
var reserved = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "“this network” (0.0.0.0 reaches the host itself)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata services live here)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "a cloud metadata service"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	// Both embed an IPv4 address that a relay then reaches for us.
	{netip.MustParsePrefix("2002::/16"), "6to4 (embeds an IPv4 address)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (embeds an IPv4 address)"},
}

// globalUnicast6 is the only IPv6 space allowed: instances have no IPv6 at
// all, and everything outside it is local, private or special.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// denied is the error of a refused connection: kind Forbidden, with the
// environment, the address and the reason.
func denied(env string, a netip.Addr, why string) error {
	who := fmt.Sprintf("environment %q", env)
	if env == "" {
		who = "the platform"
	}
	return v1.Errorf(v1.ErrForbidden, "egress: %s may not connect to %s: %s", who, a, why)
}

// Allowed decides whether a call made on behalf of env (or of no
// environment, "") may connect to a: nil, or a Forbidden error saying why
// not.
func (e *Egress) Allowed(env string, a netip.Addr) error {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return denied(env, a, "not an address")
	}
	for _, r := range reserved {
		if r.prefix.Contains(a) {
			return denied(env, a, r.why)
		}
	}
	for _, p := range e.cfg.Deny {
		if p.Contains(a) {
			return denied(env, a, "denied by the server's configuration ("+p.String()+")")
		}
	}
	host, err := e.hostAddrs()
	if err != nil {
		// Unable to tell the host's own addresses apart: refuse.
		return denied(env, a, fmt.Sprintf("the host's addresses could not be listed: %v", err))
	}
	for _, h := range host {
		if h.Unmap().WithZone("") == a {
			return denied(env, a, "an address of the host itself")
		}
	}
	for other, subnet := range e.cfg.Networks.Subnets() {
		if !subnet.Contains(a) {
			continue
		}
		if other == env {
			return nil // the environment's own instances
		}
		return denied(env, a, fmt.Sprintf("in environment %q's network", other))
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return denied(env, a, "not a global unicast IPv6 address")
	}
	return nil
}

// CheckURL says whether env may call rawURL, as far as can be told without
// resolving it: an absolute http(s) URL, whose host, when it is an address,
// is allowed, and when it is a platform name, is reached over http on port
// 80. A name is checked again, address by address, when it is dialled.
func (e *Egress) CheckURL(env, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return v1.Invalid("%q is not an absolute http or https URL", rawURL)
	}
	if u.User != nil {
		return v1.Invalid("%q carries credentials in the URL; pass them in a header", redact(u))
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return e.Allowed(env, a)
	}
	if e.platformName(env, host) {
		if env == "" {
			return v1.Errorf(v1.ErrForbidden, "egress: %s is a name of the platform, reachable only from an environment", host)
		}
		if u.Scheme != "http" || (u.Port() != "" && u.Port() != "80") {
			return v1.Errorf(v1.ErrForbidden, "egress: %s names a service of the platform: call it as http://%s/ (the gateway on the environment's bridge, port 80)", host, host)
		}
	}
	return nil
}

// platformName reports whether host is one that env's own DNS would answer
// with its gateway address: a bare NAME, NAME.ENV of a known environment,
// or anything under the platform's domain. Such names are never resolved
// on the host: they go to env's gateway listener, which routes them as
// env's and applies allowFrom.
func (e *Egress) platformName(env, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	if !strings.Contains(host, ".") {
		return true
	}
	if host == e.cfg.Domain || strings.HasSuffix(host, "."+e.cfg.Domain) {
		return true
	}
	if _, second, ok := strings.Cut(host, "."); ok && !strings.Contains(second, ".") {
		if second == env {
			return true
		}
		if _, known := e.cfg.Networks.Subnets()[second]; known {
			return true
		}
	}
	return false
}

// interfaceAddrs lists every address of every interface of the host.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap())
		}
	}
	return out, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
