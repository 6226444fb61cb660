package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/connlimit"
)

// Defaults for Config's zero values.
const (
	DefaultDomain       = "berth.localhost"
	DefaultDialTimeout  = 2 * time.Second
	DefaultTimeout      = 60 * time.Second
	DefaultMaxBodyBytes = 10 << 20
	DefaultMaxRetries   = 2

	// replayLimit is the largest request body buffered so that a failed
	// connection attempt can be replayed on another endpoint.
	replayLimit = 64 << 10
)

// Activator brings a target with no ready endpoints up (scale from zero).
// Activate returns once the target has endpoints pushed through SetTargets,
// or with an error (a v1 kind) saying why it cannot. It is asked for every
// target without ready endpoints; it decides which kinds it can wake.
type Activator interface {
	Activate(ctx context.Context, environment, name string) error
}

// Config configures a Gateway. Zero values take the defaults above.
type Config struct {
	Logger *slog.Logger
	// Domain is the suffix of host routing: NAME.ENV.Domain.
	Domain      string
	DialTimeout time.Duration
	// Timeout bounds the wait for an upstream's response headers (504);
	// the body may then stream for as long as it takes.
	Timeout time.Duration
	// MaxBodyBytes caps request bodies (413). A body of unknown length
	// (chunked) is read whole before it is forwarded, so that one over the
	// cap never reaches the upstream.
	MaxBodyBytes int64
	// SpoolDir holds those bodies past 64 KiB while they are forwarded, in
	// unlinked files (default: the system's temporary directory).
	SpoolDir string
	// MaxRetries is how many other endpoints a request whose connection
	// failed before it was sent is tried on; negative disables retries.
	MaxRetries int
	// MaxIdleConnsPerHost is the keep-alive pool size per endpoint.
	MaxIdleConnsPerHost int
	// TracerProvider, when set, traces every request (a server span, a
	// client span per upstream attempt) and passes traceparent on; nil
	// traces nothing and costs nothing.
	TracerProvider trace.TracerProvider
	// Activator, when set, is consulted for targets without endpoints.
	Activator Activator
}

// Gateway is an http.Handler proxying to the targets of its routing table.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	suffix    string // "." + domain
	upstream  *http.Transport
	proxy     *httputil.ReverseProxy
	table     atomic.Pointer[table]
	unrouted  *targetStats
	mu        sync.Mutex // serialises SetTargets and guards endpoints, stats
	endpoints map[string]*endpoint
	stats     map[string]*targetStats // by "env/name"
	tracer    trace.Tracer            // nil: tracing off
	envs      environments            // allowFrom per environment
	metrics   *metrics
}

// New returns a Gateway with an empty routing table.
func New(cfg Config) *Gateway {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, "."))
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 256
	}
	g := &Gateway{
		cfg:       cfg,
		log:       cfg.Logger, // the composition root tags it with its part
		suffix:    "." + cfg.Domain,
		unrouted:  &targetStats{},
		endpoints: map[string]*endpoint{},
		stats:     map[string]*targetStats{},
	}
	g.metrics = newMetrics(g)
	g.upstream = &http.Transport{
		Proxy: nil, // never send workload traffic to an environment's proxy
		DialContext: (&net.Dialer{
			Timeout:   cfg.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          cfg.MaxIdleConnsPerHost * 16,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The client negotiates encoding with the workload; the gateway
		// must not add gzip and transparently decode it.
		DisableCompression: true,
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &transport{g: g},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BufferPool:     bufferPool{},
	}
	if cfg.TracerProvider != nil {
		g.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	g.table.Store(&table{byHost: map[string]*route{}})
	return g
}

// CloseIdleConnections closes pooled upstream connections, for shutdown.
func (g *Gateway) CloseIdleConnections() { g.upstream.CloseIdleConnections() }

// SetTargets replaces the whole routing table. Endpoint state (in-flight
// counts, drained marks) carries over for every endpoint ID still listed;
// endpoints no longer listed are forgotten once idle, and a later listing of
// the same ID starts undrained.
func (g *Gateway) SetTargets(ts []Target) {
	g.mu.Lock()
	defer g.mu.Unlock()

	t := &table{byHost: make(map[string]*route, len(ts))}
	listed := make(map[string]bool)
	for _, tg := range ts {
		env, name := strings.ToLower(tg.Environment), strings.ToLower(tg.Name)
		if env == "" || name == "" {
			g.log.Warn("target without environment or name ignored", "environment", tg.Environment, "name", tg.Name)
			continue
		}
		key := name + "." + env
		if _, dup := t.byHost[key]; dup {
			g.log.Warn("duplicate target ignored", "environment", env, "name", name)
			continue
		}
		r := &route{
			env: env, name: name, kind: tg.Kind,
			path:        normalisePath(tg.RoutePath),
			strip:       tg.StripPrefix,
			concurrency: int64(max(tg.Concurrency, 0)),
			stats:       g.statsFor(env + "/" + name),
		}
		for _, ep := range tg.Endpoints {
			if ep.ID == "" || ep.Address == "" {
				g.log.Warn("endpoint without id or address ignored", "environment", env, "name", name, "id", ep.ID)
				continue
			}
			if listed[ep.ID] {
				continue
			}
			listed[ep.ID] = true
			e := g.endpointFor(ep)
			e.limit.Store(r.concurrency)
			e.freed.Store(r.stats)
			r.endpoints = append(r.endpoints, e)
		}
		t.byHost[key] = r
		if r.path != "" {
			t.byPath = append(t.byPath, r)
		}
	}
	sortByPath(t.byPath)
	for i := 1; i < len(t.byPath); i++ {
		if t.byPath[i].path == t.byPath[i-1].path {
			g.log.Warn("route path claimed twice; first target wins", "path", t.byPath[i].path,
				"winner", t.byPath[i-1].name+"."+t.byPath[i-1].env, "loser", t.byPath[i].name+"."+t.byPath[i].env)
		}
	}
	for id, e := range g.endpoints {
		if listed[id] {
			continue
		}
		e.removed.Store(true)
		if e.inflight.Load() == 0 {
			delete(g.endpoints, id)
		}
	}
	g.table.Store(t)
	// Requests waiting for capacity look again at the new table.
	for _, st := range g.stats {
		st.signal()
	}
}

// endpointFor returns the live state for ep, reusing it while the ID and
// address stay the same. Called with g.mu held.
func (g *Gateway) endpointFor(ep Endpoint) *endpoint {
	if e, ok := g.endpoints[ep.ID]; ok {
		if e.address == ep.Address {
			if e.removed.Load() {
				// It had disappeared from the table: a new listing is a new
				// life, so the old drain no longer applies.
				e.removed.Store(false)
				e.drained.Store(false)
			}
			e.revision = ep.Revision
			return e
		}
		e.removed.Store(true)
	}
	e := &endpoint{id: ep.ID, address: ep.Address, revision: ep.Revision, transport: ep.Transport}
	g.endpoints[ep.ID] = e
	return e
}

// forget drops a removed endpoint once its last request ended.
func (g *Gateway) forget(e *endpoint) {
	g.mu.Lock()
	if g.endpoints[e.id] == e && e.removed.Load() && e.inflight.Load() == 0 {
		delete(g.endpoints, e.id)
	}
	g.mu.Unlock()
}

// Drain takes the endpoint out of rotation at once, and keeps it out even
// if later tables still list it, until a table no longer does. It then waits
// until the endpoint has no request in flight, or ctx ends. An endpoint the
// gateway does not know has nothing in flight: Drain returns nil.
func (g *Gateway) Drain(ctx context.Context, endpointID string) error {
	g.mu.Lock()
	e := g.endpoints[endpointID]
	g.mu.Unlock()
	if e == nil {
		return nil
	}
	e.drained.Store(true)
	for {
		idle := e.idleChan()
		if idle == nil {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("drain endpoint %s: %d requests still in flight: %w",
				endpointID, e.inflight.Load(), v1.Unavailable("%v", context.Cause(ctx)))
		}
	}
}

// InFlight returns the number of requests the endpoint is serving now.
func (g *Gateway) InFlight(endpointID string) int {
	g.mu.Lock()
	e := g.endpoints[endpointID]
	g.mu.Unlock()
	if e == nil {
		return 0
	}
	return int(e.inflight.Load())
}

// call carries one request's routing decision to the transport and back.
type call struct {
	route *route
	// body is the buffered request body when it is replayable; replayable
	// is also true for requests without a body.
	body       []byte
	replayable bool
	status     int
	revision   int64 // of the endpoint that answered, for the metrics

	// spooled holds a body of unknown length too large for body, until
	// the call is over.
	spooled *os.File
}

type callKey struct{}

// ServeHTTP routes and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.tracer != nil {
		var end func()
		w, r, end = g.startServerSpan(w, r)
		defer end()
	}
	rt, miss := g.route(g.table.Load(), r)
	if rt == nil {
		g.unrouted.record(writeError(w, miss.kind, miss.msg))
		return
	}
	rt.stats.arrivals.Add(1)
	rt.stats.active.Add(1)
	defer rt.stats.active.Add(-1)
	var c *call
	status := 0
	record := func(code int) { status = code; rt.stats.record(code) }
	start, env, name, kind := time.Now(), rt.env, rt.name, rt.kind
	defer func() {
		var rev int64
		if c != nil && c.status != 0 {
			status, rev = c.status, c.revision
		}
		g.metrics.observe(env, name, kind, rev, status, time.Since(start))
	}()
	if !rt.ready() && g.cfg.Activator != nil {
		if err := g.cfg.Activator.Activate(r.Context(), rt.env, rt.name); err != nil {
			g.log.Debug("activation failed", "environment", rt.env, "name", rt.name, "err", err)
			// A workload that crashed before it was ready is a bad
			// gateway; one that already holds as many requests as it may
			// is too busy (retry later); one that is not there yet is
			// unavailable.
			what := fmt.Sprintf("%s %s in environment %s", strings.ToLower(rt.kind), rt.name, rt.env)
			switch kind := v1.KindOf(err); kind {
			case v1.ErrBadGateway:
				record(writeError(w, kind, fmt.Sprintf("%s could not be started: %v", what, err)))
			case v1.ErrTooManyRequests:
				record(writeError(w, kind, fmt.Sprintf("%s is starting and holds no more requests: %v", what, err)))
			default:
				record(writeError(w, v1.ErrUnavailable, fmt.Sprintf("%s could not be started: %v", what, err)))
			}
			return
		}
		// The activator pushed a new table; route again against it.
		if rt, miss = g.route(g.table.Load(), r); rt == nil {
			g.unrouted.record(writeError(w, miss.kind, miss.msg))
			return
		}
	}
	if !rt.ready() {
		record(writeError(w, v1.ErrUnavailable, noEndpointsMessage(rt)))
		return
	}

	c = &call{route: rt}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		record(writeError(w, v1.ErrTooLarge, tooLargeMessage(g.cfg.MaxBodyBytes)))
		return
	}
	err := g.prepareBody(w, r, c)
	if c.spooled != nil {
		defer c.spooled.Close()
	}
	if err != nil {
		switch {
		case errors.As(err, new(*http.MaxBytesError)):
			record(writeError(w, v1.ErrTooLarge, tooLargeMessage(g.cfg.MaxBodyBytes)))
		case errors.Is(err, connlimit.ErrBodyTooSlow):
			record(writeError(w, v1.ErrRequestTimeout, err.Error()))
		case v1.KindOf(err) == v1.ErrUnavailable:
			record(writeError(w, v1.ErrUnavailable, err.Error()))
		default:
			record(writeError(w, v1.ErrInvalid, fmt.Sprintf("reading request body: %v", err)))
		}
		return
	}
	// Deferred: ReverseProxy aborts a response that breaks mid-body by
	// panicking with http.ErrAbortHandler.
	defer func() { rt.stats.record(c.status) }()
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// route finds the target of r: by host when the host is NAME.ENV under the
// domain, else by the longest route path. On a miss it says why. A request
// from inside an environment (its bridge listener) is routed by routeFrom.
func (g *Gateway) route(t *table, r *http.Request) (*route, miss) {
	if caller, ok := callerOf(r); ok {
		return g.routeFrom(t, r, caller)
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if sub, ok := strings.CutSuffix(host, g.suffix); ok {
		if name, env, ok := strings.Cut(sub, "."); ok && name != "" && env != "" && !strings.Contains(env, ".") {
			if rt := t.byHost[sub]; rt != nil {
				return rt, miss{}
			}
			return nil, notFound(fmt.Sprintf("no service %s in environment %s", name, env))
		}
	}
	if rt := t.lookupPath(r.URL.Path); rt != nil {
		return rt, miss{}
	}
	return nil, notFound(fmt.Sprintf("no route for host %s and path %s", r.Host, r.URL.Path))
}

// spool copies body to a file of its own in SpoolDir, already unlinked so
// that nothing is left behind whatever happens, and returns it.
func (g *Gateway) spool(body io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(g.cfg.SpoolDir, "body-*")
	if err != nil {
		return nil, v1.Unavailable("gateway: no room to buffer the request body: %v", err)
	}
	os.Remove(f.Name())
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// prepareBody caps the body and buffers it when small enough to replay, or
// whole when its length is unknown.
func (g *Gateway) prepareBody(w http.ResponseWriter, r *http.Request, c *call) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		c.replayable = true
		return nil
	}
	body := http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
	if r.ContentLength > 0 && r.ContentLength <= replayLimit {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, buf); err != nil {
			return err
		}
		c.body, c.replayable = buf, true
		r.Body = http.NoBody
		return nil
	}
	if r.ContentLength < 0 {
		// Unknown length: the whole body is read before the upstream is
		// called, so one over the cap is refused (413) with nothing of
		// it sent; streaming it would hand the upstream a truncated
		// request. Up to the replay limit it stays in memory; beyond, it
		// goes to an unlinked file, and leaves as a known length.
		buf, err := io.ReadAll(io.LimitReader(body, replayLimit+1))
		if err != nil {
			return err
		}
		if len(buf) <= replayLimit {
			c.body, c.replayable = buf, true
			r.Body = http.NoBody
			r.ContentLength = int64(len(buf))
			r.TransferEncoding = nil
			return nil
		}
		f, err := g.spool(io.MultiReader(bytes.NewReader(buf), body))
		if err != nil {
			return err
		}
		c.spooled = f
		size, _ := f.Seek(0, io.SeekEnd)
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		r.Body = io.NopCloser(f) // closed by ServeHTTP, once the call is over
		r.ContentLength = size
		r.TransferEncoding = nil
		return nil
	}
	r.Body = body
	return nil
}

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	rt := c.route
	pr.Out.URL.Scheme = "http"
	// The transport replaces this with the chosen endpoint's address.
	pr.Out.URL.Host = rt.name + "." + rt.env
	if rt.strip && rt.path != "" && rt.path != "/" && matchPath(rt.path, pr.In.URL.Path) {
		out := pr.Out.URL
		out.Path = strings.TrimPrefix(pr.In.URL.Path, rt.path)
		if raw := pr.In.URL.RawPath; raw != "" && strings.HasPrefix(raw, rt.path) {
			out.RawPath = strings.TrimPrefix(raw, rt.path)
		} else {
			out.RawPath = ""
		}
		if out.Path == "" {
			out.Path, out.RawPath = "/", ""
		}
	}
	if c.body != nil {
		pr.Out.ContentLength = int64(len(c.body))
		// The client already got its 100 Continue when the body was read.
		pr.Out.Header.Del("Expect")
	}
	// Append to the client's chain, as nginx's $proxy_add_x_forwarded_for does.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	pr.Out.Header.Add("Via", via(pr.In.ProtoMajor, pr.In.ProtoMinor))
}

func (g *Gateway) modifyResponse(res *http.Response) error {
	if c, ok := res.Request.Context().Value(callKey{}).(*call); ok {
		c.status = res.StatusCode
		// The transport points the outgoing URL at the endpoint it chose.
		for _, e := range c.route.endpoints {
			if e.address == res.Request.URL.Host {
				c.revision = e.revision
				break
			}
		}
	}
	res.Header.Add("Via", via(res.ProtoMajor, res.ProtoMinor))
	return nil
}

func via(major, minor int) string {
	if major == 1 && minor == 1 {
		return "1.1 berth"
	}
	return fmt.Sprintf("%d.%d berth", major, minor)
}

// bufferPool reuses ReverseProxy's copy buffers, which otherwise cost 32 KiB
// of garbage per request.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// proxyError answers for a request the transport could not complete.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	kind, msg := v1.ErrBadGateway, err.Error()
	var ue *upstreamError
	switch {
	case errors.Is(err, errNoEndpoints):
		kind = v1.ErrUnavailable
		if c != nil {
			msg = noEndpointsMessage(c.route)
		}
	case errors.As(err, new(*http.MaxBytesError)):
		kind, msg = v1.ErrTooLarge, tooLargeMessage(g.cfg.MaxBodyBytes)
	case errors.As(err, &ue) && ue.timeout:
		kind = v1.ErrGatewayTimeout
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer. 499 is nginx's
		// name for it, and keeps these out of the 502 count.
		if c != nil {
			c.status = 499
		}
		g.log.Debug("client gone", "host", r.Host, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	status := writeError(w, kind, msg)
	if c != nil {
		c.status = status
	}
	if status >= 500 {
		g.log.Warn("upstream failed", "host", r.Host, "path", r.URL.Path, "status", status, "err", err)
	}
}

func noEndpointsMessage(rt *route) string {
	return fmt.Sprintf("service %s in environment %s has no ready endpoints", rt.name, rt.env)
}

func tooLargeMessage(max int64) string {
	return fmt.Sprintf("request body larger than %d bytes", max)
}

// writeError writes the API's error shape, with the status of its kind
// (v1.HTTPStatus, the API server's table), so clients parse gateway errors
// as API errors. A 503 or 429 says when to retry. It returns the status,
// for the counters.
func writeError(w http.ResponseWriter, kind, msg string) int {
	status, _ := v1.HTTPStatus(kind)
	body, _ := json.Marshal(v1.Status{Error: v1.ErrorBody{Kind: kind, Message: msg}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
	return status
}

// TargetStats counts what the gateway answered for one target. The entry
// with empty Environment and Name counts requests that matched no target.
type TargetStats struct {
	Environment string
	Name        string
	Requests    int64
	// InFlight is the sum over the target's current endpoints.
	InFlight int64
	Status   map[int]int64
}

type targetStats struct {
	// One counter per status code: lock-free on the request path.
	byStatus [600]atomic.Int64
	// active counts requests in the gateway for the target, held for a
	// cold start or proxied; arrivals counts every request routed to it.
	active   atomic.Int64
	arrivals atomic.Int64

	// freeMu guards free, a channel closed (and replaced) whenever an
	// endpoint of the target frees a slot or the table changes.
	freeMu sync.Mutex
	free   chan struct{}
}

// waitFree returns a channel closed at the next signal.
func (s *targetStats) waitFree() <-chan struct{} {
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if s.free == nil {
		s.free = make(chan struct{})
	}
	return s.free
}

func (s *targetStats) signal() {
	s.freeMu.Lock()
	if s.free != nil {
		close(s.free)
		s.free = nil
	}
	s.freeMu.Unlock()
}

// currentRoute is the live route of a target, after table swaps.
func (g *Gateway) currentRoute(env, name string) *route {
	return g.table.Load().byHost[name+"."+env]
}

// Load is what the autoscaler samples of a target: the requests in the
// gateway for it now (held for a cold start or being proxied) and the
// number that have arrived so far.
func (g *Gateway) Load(env, name string) (inFlight int, arrivals int64) {
	g.mu.Lock()
	s := g.stats[env+"/"+name]
	g.mu.Unlock()
	if s == nil {
		return 0, 0
	}
	return int(s.active.Load()), s.arrivals.Load()
}

func (s *targetStats) record(status int) {
	if status < 0 || status >= len(s.byStatus) {
		status = 0
	}
	s.byStatus[status].Add(1)
}

func (s *targetStats) snapshot() (int64, map[int]int64) {
	var total int64
	m := map[int]int64{}
	for code := range s.byStatus {
		if n := s.byStatus[code].Load(); n > 0 {
			m[code] = n
			total += n
		}
	}
	return total, m
}

// statsFor returns the counters of a target; they outlive table swaps.
// Called with g.mu held.
func (g *Gateway) statsFor(key string) *targetStats {
	s := g.stats[key]
	if s == nil {
		s = &targetStats{}
		g.stats[key] = s
	}
	return s
}

// Stats returns a snapshot of the counters, sorted by environment and name.
func (g *Gateway) Stats() []TargetStats {
	t := g.table.Load()
	inflight := map[string]int64{}
	for _, rt := range t.byHost {
		var n int64
		for _, e := range rt.endpoints {
			n += e.inflight.Load()
		}
		inflight[rt.env+"/"+rt.name] = n
	}
	g.mu.Lock()
	keys := make([]string, 0, len(g.stats))
	for k := range g.stats {
		keys = append(keys, k)
	}
	stats := make(map[string]*targetStats, len(g.stats))
	for k, v := range g.stats {
		stats[k] = v
	}
	g.mu.Unlock()
	sort.Strings(keys)

	var out []TargetStats
	if n, m := g.unrouted.snapshot(); n > 0 {
		out = append(out, TargetStats{Requests: n, Status: m})
	}
	for _, k := range keys {
		env, name, _ := strings.Cut(k, "/")
		n, m := stats[k].snapshot()
		out = append(out, TargetStats{Environment: env, Name: name, Requests: n, InFlight: inflight[k], Status: m})
	}
	return out
}

// SetActivator plugs in the activator after construction (it needs the
// gateway as its table, the gateway needs it to wake functions). Call it
// before serving.
func (g *Gateway) SetActivator(a Activator) { g.cfg.Activator = a }
