package connlimit

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Limits caps the connections of one listener.
type Limits struct {
	// MaxConns is how many connections the listener holds at once.
	MaxConns int
	// MaxConnsPerClient is how many of them one client address holds (an
	// IPv6 address counts by its /64).
	MaxConnsPerClient int
	// WriteStall is the longest one write to a client may block.
	WriteStall time.Duration
}

// Defaults for the server's listeners. A client behind a proxy shares the
// proxy's address: the per-client cap is then the proxy's.
var (
	// APILimits: the CLI, CI jobs and the platform's own containerd
	// pulling from the registry.
	APILimits = Limits{MaxConns: 1024, MaxConnsPerClient: 128, WriteStall: time.Minute}
	// GatewayLimits: the user's listener, all traffic from outside.
	GatewayLimits = Limits{MaxConns: 8192, MaxConnsPerClient: 512, WriteStall: time.Minute}
	// EnvironmentLimits: one environment's bridge listener, where each
	// client is one of its instances.
	EnvironmentLimits = Limits{MaxConns: 2048, MaxConnsPerClient: 256, WriteStall: time.Minute}
)

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = GatewayLimits.MaxConns
	}
	if l.MaxConnsPerClient <= 0 || l.MaxConnsPerClient > l.MaxConns {
		l.MaxConnsPerClient = min(GatewayLimits.MaxConnsPerClient, l.MaxConns)
	}
	if l.WriteStall <= 0 {
		l.WriteStall = time.Minute
	}
	return l
}

// Listener is a net.Listener that holds at most Limits' connections.
type Listener struct {
	net.Listener
	lim  Limits
	log  *slog.Logger
	name string

	mu       sync.Mutex
	active   int
	byClient map[netip.Addr]int

	rejected   atomic.Uint64
	lastLogged atomic.Int64 // unix nanos of the last rejection logged
}

// NewListener wraps ln. name says which listener it is in logs.
func NewListener(ln net.Listener, name string, lim Limits, logger *slog.Logger) *Listener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, lim: lim.withDefaults(), log: logger, name: name, byClient: map[netip.Addr]int{}}
}

// Accept returns the next connection within the limits; connections over
// them are answered and closed here, never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientKey(c.RemoteAddr())
		l.mu.Lock()
		switch {
		case l.active >= l.lim.MaxConns:
			l.mu.Unlock()
			l.reject(c, client, "503 Service Unavailable", v1.ErrUnavailable, fmt.Sprintf("the server holds its maximum of %d connections", l.lim.MaxConns))
			continue
		case l.byClient[client] >= l.lim.MaxConnsPerClient:
			l.mu.Unlock()
			l.reject(c, client, "429 Too Many Requests", v1.ErrTooManyRequests, fmt.Sprintf("%s holds its maximum of %d connections", client, l.lim.MaxConnsPerClient))
			continue
		}
		l.active++
		l.byClient[client]++
		l.mu.Unlock()
		return &conn{Conn: c, slot: &Slot{l: l, client: client}}, nil
	}
}

// Active is how many connections the listener holds now.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// Rejected is how many connections were turned away since the start.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

func (l *Listener) release(client netip.Addr) {
	l.mu.Lock()
	l.active--
	if n := l.byClient[client] - 1; n > 0 {
		l.byClient[client] = n
	} else {
		delete(l.byClient, client)
	}
	l.mu.Unlock()
}

// reject answers c with status in a single write that cannot block (a
// fresh socket's send buffer takes it) and closes it. The client may see a
// reset instead if it was still sending; it is refused either way.
func (l *Listener) reject(c net.Conn, client netip.Addr, status, kind, why string) {
	n := l.rejected.Add(1)
	body := `{"error":{"kind":"` + kind + `","message":"` + why + `; try again later"}}`
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, _ = c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body))
	_ = c.Close()
	// One line per second at most: a flood must not become a log flood.
	now := time.Now().UnixNano()
	if last := l.lastLogged.Load(); now-last > int64(time.Second) && l.lastLogged.CompareAndSwap(last, now) {
		l.log.Warn("connection refused", "listener", l.name, "client", client.String(), "reason", why, "rejected_total", n)
	}
}

// clientKey is what a client's connections are counted under: its address,
// or for IPv6 its /64 (one host's, usually).
func clientKey(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// conn gives its slot back once, on Close, and bounds each write.
type conn struct {
	net.Conn
	slot *Slot
}

// Slot is one connection's place in a Listener's counts, apart from the
// connection: a server that takes a connection's file descriptor over
// (Detach) gives the slot back when it closes it.
type Slot struct {
	l      *Listener
	client netip.Addr
	once   sync.Once
}

// Release gives the slot back; later calls do nothing.
func (s *Slot) Release() {
	if s != nil {
		s.once.Do(func() { s.l.release(s.client) })
	}
}

// Wrap returns nc holding the slot, as Accept returned it: its writes
// bounded, the slot given back on Close. A nil slot returns nc.
func (s *Slot) Wrap(nc net.Conn) net.Conn {
	if s == nil {
		return nc
	}
	return &conn{Conn: nc, slot: s}
}

// Detach splits a connection Accept returned into the network
// connection and its slot (nil for one that is not a Listener's).
func Detach(c net.Conn) (net.Conn, *Slot) {
	if lc, ok := c.(*conn); ok {
		return lc.Conn, lc.slot
	}
	return c, nil
}

func (c *conn) Write(p []byte) (int, error) {
	// A fresh deadline per write: a stream may pause between writes for as
	// long as it likes, but no write may hang on a client that stopped
	// reading.
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.slot.l.lim.WriteStall)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.slot.Release()
	return err
}

// CloseWrite lets net/http half-close the connection before it closes it,
// as it does for a plain TCP connection.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// WriteStall is the longest one write to the slot's client may block
// (a minute for a nil slot).
func (s *Slot) WriteStall() time.Duration {
	if s == nil {
		return time.Minute
	}
	return s.l.lim.WriteStall
}
