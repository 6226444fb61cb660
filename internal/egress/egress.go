package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Config is what the composition root gives the egress policy.
type Config struct {
	// Networks gives every environment's subnet (required).
	Networks Networks
	// Doors gives each environment's gateway listener; without it,
	// platform names are refused.
	Doors Doors
	// Domain is the gateway's host suffix (NAME.ENV.Domain).
	Domain string
	// Deny are more ranges no call may reach (an operator's internal
	// networks, say).
	Deny []netip.Prefix
	// HostAddrs lists the host's own addresses; default: every address of
	// every interface, listed at each connection (a bridge made a moment
	// ago counts).
	HostAddrs func() ([]netip.Addr, error)
	// Resolver resolves names (default: the host's resolver). Tests point
	// it at a DNS server of their own.
	Resolver *net.Resolver
	// DialTimeout bounds one connection attempt (default 10s).
	DialTimeout time.Duration
	// TLS, when set, is the TLS configuration of https calls (tests trust
	// their own CA with it).
	TLS    *tls.Config
	Logger *slog.Logger
}

const (
	defaultDomain      = "berth.localhost"
	defaultDialTimeout = 10 * time.Second
	// maxResponseHeader bounds what a remote server can make us buffer
	// before its body.
	maxResponseHeader = 1 << 20
	maxRedirects      = 10
)

// Egress makes the clients of each environment.
type Egress struct {
	cfg       Config
	log       *slog.Logger
	hostAddrs func() ([]netip.Addr, error)

	mu         sync.Mutex
	transports map[string]*http.Transport
}

// New checks cfg and returns the policy. It dials nothing.
func New(cfg Config) (*Egress, error) {
	if cfg.Networks == nil {
		return nil, v1.Invalid("egress: Networks is required")
	}
	if cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, ".")); cfg.Domain == "" {
		cfg.Domain = defaultDomain
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Egress{cfg: cfg, log: cfg.Logger, hostAddrs: cfg.HostAddrs, transports: map[string]*http.Transport{}}
	if e.hostAddrs == nil {
		e.hostAddrs = interfaceAddrs
	}
	return e, nil
}

// Client returns the client for calls made on behalf of env; "" is the
// platform's own calls for no environment (an image pull by URL), which
// reach neither any environment nor platform names. It has no overall
// timeout: callers bound each call with their context.
func (e *Egress) Client(env string) *http.Client {
	return &http.Client{
		Transport: e.Transport(env),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// Each hop is dialled, so checked, again; this only bounds them.
			if len(via) >= maxRedirects {
				return fmt.Errorf("egress: stopped after %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// Transport returns env's transport, for clients built elsewhere (a
// registry client's WithTransport). Each environment has its own, so that
// no kept-alive connection dialled for one is ever reused for another.
func (e *Egress) Transport(env string) http.RoundTripper {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.transports[env]; t != nil {
		return t
	}
	t := &http.Transport{
		// Never an environment variable's proxy: the proxy's address would
		// be checked instead of the target's.
		Proxy:                  nil,
		DialContext:            e.DialContext(env),
		TLSClientConfig:        e.cfg.TLS,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        30 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeader,
	}
	e.transports[env] = t
	return t
}

// DialContext returns env's dialer, for clients that are not net/http.
// Platform names go to env's gateway listener; anything else is resolved
// and each address checked by Allowed just before connecting.
func (e *Egress) DialContext(env string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return nil, v1.Errorf(v1.ErrForbidden, "egress: network %q is not allowed", network)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if e.platformName(env, host) {
			return e.dialDoor(ctx, env, host, port)
		}
		d := &net.Dialer{
			Timeout:   e.cfg.DialTimeout,
			KeepAlive: 30 * time.Second,
			Resolver:  e.cfg.Resolver,
			// Control sees the resolved address of each attempt: the
			// only place where what is checked is what is connected to.
			Control: func(_, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return v1.Errorf(v1.ErrForbidden, "egress: cannot tell the address of %q: %v", address, err)
				}
				if err := e.Allowed(env, ap.Addr()); err != nil {
					e.log.Info("egress refused", "environment", env, "host", host, "address", ap.Addr().String(), "err", err)
					return err
				}
				return nil
			},
		}
		return d.DialContext(ctx, network, addr)
	}
}

// dialDoor connects to env's gateway listener for a platform name. The
// request keeps its Host, so the gateway routes it as env's, exactly as
// when one of env's containers calls it.
func (e *Egress) dialDoor(ctx context.Context, env, host, port string) (net.Conn, error) {
	if env == "" {
		return nil, v1.Errorf(v1.ErrForbidden, "egress: %s is a name of the platform, reachable only from an environment", host)
	}
	if port != "80" {
		return nil, v1.Errorf(v1.ErrForbidden, "egress: %s names a service of the platform: call it as http://%s/ (the gateway on the environment's bridge, port 80), not on port %s", host, host, port)
	}
	addr := ""
	if e.cfg.Doors != nil {
		addr = e.cfg.Doors.Addr(env)
	}
	if addr == "" {
		return nil, v1.Unavailable("egress: environment %q has no gateway listener yet", env)
	}
	d := &net.Dialer{Timeout: e.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}
