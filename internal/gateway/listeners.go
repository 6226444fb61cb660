package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/connlimit"
)

// Listeners serves the gateway on each environment's bridge address, as
// seen from inside that environment (ForEnvironment): a container's
// `http://orders/` lands here, after the environment's DNS answered the
// bridge address.
type Listeners struct {
	g    *Gateway
	port int
	log  *slog.Logger

	mu      sync.Mutex
	servers map[string]*bridgeServer
	wg      sync.WaitGroup
}

type bridgeServer struct {
	ip  net.IP
	srv *Server
	ln  net.Listener
}

// Protocols are what every listener of the gateway speaks: HTTP/1.1, and
// HTTP/2 without TLS (h2c, with prior knowledge) to the clients that open
// with it, gRPC's among them.
func Protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// NewListeners returns listeners of g on port (80 in the server; 0 picks a
// free port, for tests).
func NewListeners(g *Gateway, port int, logger *slog.Logger) *Listeners {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Listeners{g: g, port: port, log: logger, servers: map[string]*bridgeServer{}}
}

// Listen serves env's view of the gateway on ip. It is idempotent; a new ip
// for env replaces the old listener.
func (l *Listeners) Listen(ctx context.Context, env string, ip net.IP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.servers[env]; s != nil {
		if s.ip.Equal(ip) {
			return nil
		}
		s.srv.Close()
		delete(l.servers, env)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(l.port)))
	if err != nil {
		return v1.Unavailable("gateway of environment %s on %s: %v", env, ip, err)
	}
	// The environment's instances are its clients: each is held to the
	// same bounds as one outside (package connlimit).
	ln = connlimit.NewListener(ln, "environment "+env, connlimit.EnvironmentLimits, l.log)
	s := &bridgeServer{
		ip:  append(net.IP(nil), ip...),
		ln:  ln,
		srv: NewServer(l.g.ForEnvironment(env), connlimit.DefaultTimeouts, l.log),
	}
	l.servers[env] = s
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("environment listener stopped", "environment", env, "err", err)
		}
	}()
	l.log.Info("gateway listening for environment", "environment", env, "addr", ln.Addr().String())
	return nil
}

// Unlisten stops env's listener at once; requests in flight are cut (the
// environment is going away). An unknown env is not an error.
func (l *Listeners) Unlisten(env string) {
	l.mu.Lock()
	s := l.servers[env]
	delete(l.servers, env)
	l.mu.Unlock()
	if s != nil {
		s.srv.Close()
		l.log.Info("gateway stopped listening for environment", "environment", env)
	}
}

// Addr is where env's listener listens, "" if nowhere.
func (l *Listeners) Addr(env string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.servers[env]; s != nil {
		return s.ln.Addr().String()
	}
	return ""
}

// Shutdown stops every listener, letting requests in flight finish until
// ctx ends.
func (l *Listeners) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	servers := l.servers
	l.servers = map[string]*bridgeServer{}
	l.mu.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.srv.Shutdown(ctx))
	}
	l.wg.Wait()
	return errors.Join(errs...)
}
