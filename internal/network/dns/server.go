package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
)

// Names decides which names an environment's DNS answers. The gateway
// implements it: it knows the workloads and the environments' allowFrom.
type Names interface {
	// Reachable reports whether a workload of environment from may call
	// the Service or Function name of environment env.
	Reachable(from, env, name string) bool
}

// Subdomains is what Names may also answer: whether the names under
// NAME.ENV.DOMAIN are NAME's too (the gateway's platform endpoints).
type Subdomains interface {
	HasSubdomains(name string) bool
}

// Config configures a Server. Zero values take the defaults.
type Config struct {
	Names Names
	// Domain is the gateway's host suffix: NAME.ENV.Domain.
	Domain string
	// Port is where each environment's server listens: 0 means 53, a
	// negative port any free one (for tests).
	Port int
	// TTL of answers. Short, so a removed workload stops resolving soon.
	TTL    time.Duration
	Logger *slog.Logger
}

// Server runs one responder per environment.
type Server struct {
	cfg    Config
	log    *slog.Logger
	suffix string

	mu   sync.Mutex
	envs map[string]*responder
}

// responder is one environment's listeners.
type responder struct {
	env  string
	ip   net.IP
	udp  net.PacketConn
	tcp  net.Listener
	done sync.WaitGroup
}

// New returns a Server that listens nowhere yet.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, ".")); cfg.Domain == "" {
		cfg.Domain = "berth.localhost"
	}
	switch {
	case cfg.Port == 0:
		cfg.Port = 53
	case cfg.Port < 0:
		cfg.Port = 0
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	return &Server{cfg: cfg, log: cfg.Logger, suffix: "." + cfg.Domain, envs: map[string]*responder{}}
}

// Listen serves env's names on ip (UDP and TCP). It is idempotent; a new
// ip for env replaces the old listeners.
func (s *Server) Listen(ctx context.Context, env string, ip net.IP) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.envs[env]; r != nil {
		if r.ip.Equal(ip) {
			return nil
		}
		r.close()
		delete(s.envs, env)
	}
	if ip.To4() == nil {
		// Answers are A records of this address: an IPv6 or nil address
		// would answer 0.0.0.0.
		return v1.Invalid("DNS of environment %s: %q is not an IPv4 address", env, ip)
	}
	var lc net.ListenConfig
	host := ip.String()
	var udp net.PacketConn
	var tcp net.Listener
	for attempt := 1; ; attempt++ {
		var err error
		udp, err = listenUDP(ctx, &lc, net.JoinHostPort(host, strconv.Itoa(s.cfg.Port)))
		if err != nil {
			return v1.Unavailable("DNS of environment %s on %s: %v", env, host, err)
		}
		// With port 0 the TCP side takes the port UDP was given, which a
		// TCP socket may hold already (a client's local port): then
		// another free port is tried.
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err = lc.Listen(ctx, "tcp4", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			break
		}
		udp.Close()
		if s.cfg.Port != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == 20 {
			return v1.Unavailable("DNS of environment %s on %s: %v", env, host, err)
		}
	}
	r := &responder{env: env, ip: append(net.IP(nil), ip.To4()...), udp: udp, tcp: tcp}
	r.done.Add(2)
	go s.serveUDP(r)
	go s.serveTCP(r)
	s.envs[env] = r
	s.log.Info("environment DNS listening", "environment", env, "addr", udp.LocalAddr().String())
	return nil
}

// listenUDP is ListenPacket on udp4; a test makes it hand out a port
// whose TCP twin is taken.
var listenUDP = func(ctx context.Context, lc *net.ListenConfig, addr string) (net.PacketConn, error) {
	return lc.ListenPacket(ctx, "udp4", addr)
}

// Unlisten stops env's responder; an unknown env is not an error.
func (s *Server) Unlisten(env string) {
	s.mu.Lock()
	r := s.envs[env]
	delete(s.envs, env)
	s.mu.Unlock()
	if r != nil {
		r.close()
		s.log.Info("environment DNS stopped", "environment", env)
	}
}

// Close stops every responder.
func (s *Server) Close() {
	s.mu.Lock()
	envs := s.envs
	s.envs = map[string]*responder{}
	s.mu.Unlock()
	for _, r := range envs {
		r.close()
	}
}

// Addr is the UDP (and TCP) address env's responder listens on, "" if none.
func (s *Server) Addr(env string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.envs[env]; r != nil {
		return r.udp.LocalAddr().String()
	}
	return ""
}

func (r *responder) close() {
	r.udp.Close()
	r.tcp.Close()
	r.done.Wait()
}

func (s *Server) serveUDP(r *responder) {
	defer r.done.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.udp.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("DNS read", "environment", r.env, "err", err)
			}
			return
		}
		if resp := s.answer(r.env, r.ip, buf[:n]); resp != nil {
			if _, err := r.udp.WriteTo(resp, from); err != nil {
				s.log.Debug("DNS write", "environment", r.env, "to", from, "err", err)
			}
		}
	}
}

func (s *Server) serveTCP(r *responder) {
	defer r.done.Done()
	var (
		conns sync.WaitGroup
		mu    sync.Mutex
		open  = map[net.Conn]struct{}{}
	)
	defer func() {
		// The listener is closed: close the connections too, rather than
		// wait out their idle deadline (Listen waits for this with s.mu
		// held, and a client that keeps asking would hold it for ever).
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	retry := backoff.Backoff{Base: 5 * time.Millisecond, Max: time.Second}
	for {
		c, err := r.tcp.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: keep serving once it
			// passes, rather than leave the environment without TCP DNS.
			d := retry.Next()
			s.log.Warn("DNS accept", "environment", r.env, "err", err, "retry_in", d)
			time.Sleep(d)
			continue
		}
		retry.Reset()
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			s.serveConn(r, c)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		}()
	}
}

// serveConn answers length-prefixed queries (RFC 1035 4.2.2) until the
// client closes or idles for 10 seconds.
func (s *Server) serveConn(r *responder, c net.Conn) {
	defer c.Close()
	var n [2]byte
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp := s.answer(r.env, r.ip, msg)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answer builds the response to one query asked in env, whose responder
// (and gateway) address is ip. It returns nil for input that is not a DNS
// query at all, which is dropped.
func (s *Server) answer(env string, ip net.IP, query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	rh := dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: true,
		RecursionDesired: h.RecursionDesired,
	}
	withA := false
	switch {
	case err != nil || len(qs) != 1:
		rh.RCode, qs = dnsmessage.RCodeFormatError, nil
	case h.OpCode != 0:
		rh.RCode = dnsmessage.RCodeNotImplemented
	default:
		q := qs[0]
		target, name, ok := s.parse(env, q.Name.String())
		if !ok || q.Class != dnsmessage.ClassINET || !s.cfg.Names.Reachable(env, target, name) {
			rh.RCode = dnsmessage.RCodeNameError
			break
		}
		// Other types of a known name get an empty answer (NODATA), not
		// NXDOMAIN: resolvers ask A and AAAA together and would otherwise
		// take the AAAA's NXDOMAIN for the name's.
		withA = q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL
	}

	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if b.StartQuestions() != nil {
		return nil
	}
	for _, q := range qs {
		if b.Question(q) != nil {
			return nil
		}
	}
	if withA {
		var a dnsmessage.AResource
		copy(a.A[:], ip.To4())
		rr := dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: uint32(s.cfg.TTL / time.Second)}
		if b.StartAnswers() != nil || b.AResource(rr, a) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// parse maps a queried name to (environment, workload): NAME is the asking
// environment's, NAME.ENV and NAME.ENV.DOMAIN name ENV's.
func (s *Server) parse(env, qname string) (target, name string, ok bool) {
	q := strings.ToLower(strings.TrimSuffix(qname, "."))
	if rest, cut := strings.CutSuffix(q, s.suffix); cut {
		q = rest
		name, target, ok = strings.Cut(q, ".")
		// SUB.NAME.ENV.DOMAIN is NAME's when NAME has subdomains (a
		// virtual-host-style bucket of the object store).
		if labels := strings.Split(q, "."); len(labels) > 2 {
			if sd, has := s.cfg.Names.(Subdomains); has && sd.HasSubdomains(labels[len(labels)-2]) {
				name, target, ok = labels[len(labels)-2], labels[len(labels)-1], true
			}
		}
	} else if name, target, ok = strings.Cut(q, "."); !ok {
		name, target, ok = q, env, true
	}
	if !ok || name == "" || target == "" || strings.Contains(target, ".") {
		return "", "", false
	}
	return target, name, true
}
