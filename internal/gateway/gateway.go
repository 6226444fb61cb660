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
	"strconv"
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
	// WaitForTable, when positive, holds a request that finds no route
	// until the first routing table is set (at most this long): a server
	// just started answers for its workloads instead of 404.
	WaitForTable time.Duration
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
	// TracerProvider, when set, traces requests (a server span, a client
	// span per upstream attempt) and passes traceparent on; nil traces
	// nothing and costs nothing.
	TracerProvider trace.TracerProvider
	// SampleRatio, when set, is the share of new traces (requests without
	// a sampled caller) the gateway records, deciding itself: a request it
	// skips then costs no span, only the trace context it passes on. A
	// caller's decision is followed, and failed requests and cold starts
	// are recorded regardless (the provider's sampler must honour
	// tracing.AttrKeep, as Berth's does). 0: the provider's sampler
	// decides for every request.
	SampleRatio float64
	// Activator, when set, is consulted for targets without endpoints.
	Activator Activator
	// DisableMetrics leaves requests uncounted for Prometheus (the
	// Collector reports no requests): for measuring what counting costs.
	DisableMetrics bool
}

// Gateway is an http.Handler proxying to the targets of its routing table.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	suffix   string          // "." + domain
	upstream *http.Transport // upgrades
	// upstreamH2 speaks HTTP/2 without TLS (h2c) to workloads, for gRPC.
	upstreamH2  *http.Transport
	proxy       *httputil.ReverseProxy
	idleTimeout time.Duration // of pooled upstream connections
	table       atomic.Pointer[table]
	unrouted    *targetStats
	mu          sync.Mutex // serialises SetTargets and guards endpoints, stats
	endpoints   map[string]*endpoint
	stats       map[string]*targetStats // by "env/name"
	tracer      trace.Tracer            // nil: tracing off
	envs        environments            // allowFrom per environment
	metrics     *metrics
	// loaded is closed by the first SetTargets (WaitForTable).
	loaded     chan struct{}
	loadedOnce sync.Once
	// platform are the platform's own endpoints (SetPlatform), set
	// before serving and only read after.
	platform map[string]PlatformHandler
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
		loaded:    make(chan struct{}),
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
	g.idleTimeout = g.upstream.IdleConnTimeout
	g.upstreamH2 = g.upstream.Clone()
	g.upstreamH2.Protocols = new(http.Protocols)
	g.upstreamH2.Protocols.SetUnencryptedHTTP2(true)
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &transport{g: g},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.reverseProxyError,
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
func (g *Gateway) CloseIdleConnections() {
	g.upstream.CloseIdleConnections()
	g.upstreamH2.CloseIdleConnections()
	g.mu.Lock()
	for _, e := range g.endpoints {
		e.pool.closeIdle(false)
	}
	g.mu.Unlock()
}

// SetTargets replaces the whole routing table. Endpoint state (in-flight
// counts, drained marks) carries over for every endpoint ID still listed;
// endpoints no longer listed are forgotten once idle, and a later listing of
// the same ID starts undrained.
func (g *Gateway) SetTargets(ts []Target) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.loadedOnce.Do(func() { close(g.loaded) })

	t := &table{byHost: make(map[string]*route, len(ts))}
	listed := make(map[string]bool)
	type tagRoute struct {
		key string
		r   *route
	}
	var tags []tagRoute
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
			env: env, name: name, kind: tg.Kind, key: key,
			path:        normalisePath(tg.RoutePath),
			strip:       tg.StripPrefix,
			concurrency: int64(max(tg.Concurrency, 0)),
			spanName:    "gateway " + name + "." + env,
			stats:       g.statsFor(env + "/" + name),
		}
		var unshared map[int64]bool
		r.split, unshared = splitOf(tg.Split)
		var all []*endpoint
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
			all = append(all, e)
			if !unshared[ep.Revision] {
				r.endpoints = append(r.endpoints, e)
			}
		}
		r.sticky, r.cookie = tg.Sticky, "berth-rev-"+name
		t.byHost[key] = r
		if r.path != "" {
			t.byPath = append(t.byPath, r)
		}
		for _, tag := range tg.Tags {
			tr := *r
			tr.path, tr.split, tr.sticky, tr.pin = "", nil, false, tag.Revision
			tr.key = strings.ToLower(v1.TagHost(tag.Name, name)) + "." + env
			tr.endpoints = nil
			for _, e := range all {
				if e.revision.Load() == tag.Revision {
					tr.endpoints = append(tr.endpoints, e)
				}
			}
			tags = append(tags, tagRoute{key: tr.key, r: &tr})
		}
	}
	// A workload's own name wins over a tag's host (the API refuses such
	// tags; one applied before the workload could still collide).
	for _, tr := range tags {
		if _, taken := t.byHost[tr.key]; taken {
			g.log.Warn("tag host is a workload's name; tag ignored", "host", tr.key)
			continue
		}
		t.byHost[tr.key] = tr.r
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
			e.pool.closeIdle(true)
		}
	}
	g.table.Store(t)
	// Requests waiting for capacity look again at the new table.
	for _, st := range g.stats {
		st.signal()
	}
}

// splitOf turns shares into cumulative ones, and says which revisions are
// listed without a share (reached only by their tags). The split is nil
// when one revision takes everything: a rolling update of it then spreads
// requests over old and new instances alike, as without a split.
func splitOf(shares []RevisionShare) (split []share, unshared map[int64]bool) {
	sum := 0
	for _, s := range shares {
		if s.Percent <= 0 {
			if unshared == nil {
				unshared = map[int64]bool{}
			}
			unshared[s.Revision] = true
			continue
		}
		sum += s.Percent
		split = append(split, share{revision: s.Revision, upTo: sum})
	}
	if len(split) == 1 {
		split = nil
	}
	return split, unshared
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
			e.revision.Store(ep.Revision)
			return e
		}
		e.removed.Store(true)
		e.pool.closeIdle(true)
	}
	e := &endpoint{id: ep.ID, address: ep.Address, transport: ep.Transport}
	e.revision.Store(ep.Revision)
	g.endpoints[ep.ID] = e
	return e
}

// forget drops a removed endpoint once its last request ended.
func (g *Gateway) forget(e *endpoint) {
	g.mu.Lock()
	if g.endpoints[e.id] == e && e.removed.Load() && e.inflight.Load() == 0 {
		delete(g.endpoints, e.id)
		e.pool.closeIdle(true)
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
	// h2 sends the request to the workload over HTTP/2 (gRPC).
	h2       bool
	status   int
	revision int64 // of the endpoint that answered, for the metrics
	// want is the revision the request should reach (0: any), and
	// stick that the answer gives a sticky client its cookie.
	want    int64
	stick   bool
	start   time.Time
	span    *serverSpan // nil: not tracing
	spanMem serverSpan  // span's memory: one allocation less
	// ctx is the request's context with its span, when tracing: kept
	// here rather than in a copy of the request.
	ctx context.Context

	// spooled holds a body of unknown length too large for body, until
	// the call is over.
	spooled *os.File

	// Held by the HTTP/1.1 path between the answer's head and its end.
	conn  *upConn
	stop  func() bool // stops watching the client for the conn
	ep    *endpoint
	upSpn trace.Span
}

type callKey struct{}

// cookie is the sticky cookie naming the revision that answered.
func (c *call) cookie() string {
	return (&http.Cookie{Name: c.route.cookie, Value: strconv.FormatInt(c.revision, 10), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}).String()
}

// ServeHTTP routes and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.serve(w, r, "", false)
}

// serve routes and proxies one request; inside says it came from inside
// environment caller (its bridge listener or a cluster's pod).
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, caller string, inside bool) {
	if g.servePlatform(w, r, caller) {
		return
	}
	start := time.Now()
	rt, miss := g.route(g.table.Load(), r, caller, inside)
	if rt == nil && g.cfg.WaitForTable > 0 {
		select {
		case <-g.loaded:
		default:
			// Just started, the table not loaded yet: a request for a
			// workload the store holds must not get a 404 for it.
			t := time.NewTimer(g.cfg.WaitForTable)
			select {
			case <-g.loaded:
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
			rt, miss = g.route(g.table.Load(), r, caller, inside)
		}
	}
	c := &call{route: rt, start: start, ctx: r.Context()}
	if g.tracer != nil {
		c.span = &c.spanMem
		c.ctx = g.startServerSpan(c.ctx, c.span, r, rt, start)
	}
	if rt == nil {
		status := writeError(w, miss.kind, miss.msg)
		g.unrouted.record(status)
		if c.span != nil {
			c.span.end(status, 0, nil)
		}
		return
	}
	sp := c.span
	rt.stats.arrivals.Add(1)
	rt.stats.active.Add(1)
	// Deferred: a response that breaks mid-body is aborted by panicking
	// with http.ErrAbortHandler, and still counts.
	defer g.finish(c)
	if !rt.ready() && g.cfg.Activator != nil {
		if sp != nil {
			// Every cold start is traced, sampled or not.
			c.ctx = sp.keep(c.ctx, "cold_start")
		}
		if err := g.cfg.Activator.Activate(c.ctx, rt.env, rt.name); err != nil {
			g.log.Debug("activation failed", "environment", rt.env, "name", rt.name, "err", err)
			// A workload that crashed before it was ready is a bad
			// gateway; one that already holds as many requests as it may
			// is too busy (retry later); one that is not there yet is
			// unavailable.
			what := fmt.Sprintf("%s %s in environment %s", strings.ToLower(rt.kind), rt.name, rt.env)
			switch kind := v1.KindOf(err); kind {
			case v1.ErrBadGateway:
				c.status = writeError(w, kind, fmt.Sprintf("%s could not be started: %v", what, err))
			case v1.ErrTooManyRequests:
				c.status = writeError(w, kind, fmt.Sprintf("%s is starting and holds no more requests: %v", what, err))
			default:
				c.status = writeError(w, v1.ErrUnavailable, fmt.Sprintf("%s could not be started: %v", what, err))
			}
			return
		}
		// The activator pushed a new table; route again against it.
		nrt, miss := g.route(g.table.Load(), r, caller, inside)
		if nrt == nil {
			c.status = writeError(w, miss.kind, miss.msg)
			return
		}
		c.route = nrt
		rt = nrt
	}
	if !rt.ready() {
		c.status = writeError(w, v1.ErrUnavailable, noEndpointsMessage(rt))
		return
	}
	c.want, c.stick = rt.choose(r)

	if r.ContentLength > g.cfg.MaxBodyBytes {
		c.status = writeError(w, v1.ErrTooLarge, tooLargeMessage(g.cfg.MaxBodyBytes))
		return
	}
	if isGRPC(r) {
		// A gRPC stream goes both ways at once: its body is forwarded as
		// it comes, never buffered, and bounded by gRPC's own message
		// limits rather than the body cap.
		c.h2 = true
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(c.ctx, callKey{}, c)))
		return
	}
	err := g.prepareBody(w, r, c)
	if c.spooled != nil {
		defer c.spooled.Close()
	}
	if err != nil {
		switch {
		case errors.As(err, new(*http.MaxBytesError)):
			c.status = writeError(w, v1.ErrTooLarge, tooLargeMessage(g.cfg.MaxBodyBytes))
		case errors.Is(err, connlimit.ErrBodyTooSlow):
			c.status = writeError(w, v1.ErrRequestTimeout, err.Error())
		case v1.KindOf(err) == v1.ErrUnavailable:
			c.status = writeError(w, v1.ErrUnavailable, err.Error())
		default:
			c.status = writeError(w, v1.ErrInvalid, fmt.Sprintf("reading request body: %v", err))
		}
		return
	}
	// An in-process endpoint (a Wasm function) is a RoundTripper: the
	// reverse proxy's path calls it instead of a connection.
	if fastPath(r) && !rt.inProcess() {
		g.serveH1(w, r, c)
		return
	}
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(c.ctx, callKey{}, c)))
}

// finish counts a routed request once it was answered: the status sent
// (499 when the client went away), the revision of the endpoint that
// answered (0 when none did) and the time from routing to the end of the
// answer; and ends its span.
func (g *Gateway) finish(c *call) {
	rt := c.route
	rt.stats.active.Add(-1)
	rt.stats.record(c.status)
	d := time.Since(c.start)
	// Counted for the revision that answered, or the one the request was
	// meant for when none did (a 502 of a failing canary counts against
	// it).
	rev := c.revision
	if rev == 0 {
		rev = c.want
	}
	rt.stats.revs.observe(rev, c.status, d)
	if !g.cfg.DisableMetrics {
		g.metrics.observe(rt, c.revision, c.status, d)
	}
	if c.span != nil {
		c.span.end(c.status, c.revision, nil)
	}
}

// route finds the target of r: by host when the host is NAME.ENV under the
// domain, else by the longest route path. On a miss it says why. A request
// from inside an environment (its bridge listener) is routed by routeFrom.
func (g *Gateway) route(t *table, r *http.Request, caller string, inside bool) (*route, miss) {
	if inside {
		return g.routeFrom(t, r, caller)
	}
	host := strings.TrimSuffix(stripPort(r.Host), ".")
	if sub, ok := cutSuffixFold(host, g.suffix); ok {
		if name, env, ok := strings.Cut(sub, "."); ok && name != "" && env != "" && !strings.Contains(env, ".") {
			if rt := t.byHost[sub]; rt != nil {
				return rt, miss{}
			}
			if rt := t.byHost[strings.ToLower(sub)]; rt != nil {
				return rt, miss{}
			}
			return nil, notFound(fmt.Sprintf("no service %s in environment %s", strings.ToLower(name), strings.ToLower(env)))
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
		if c.stick {
			res.Header.Add("Set-Cookie", c.cookie())
		}
	}
	res.Header.Add("Via", via(res.ProtoMajor, res.ProtoMinor))
	return nil
}

// stripPort returns host without its :port, without allocating.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

func via(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1 berth"
	case major == 2:
		return "2 berth"
	}
	return fmt.Sprintf("%d.%d berth", major, minor)
}

// bufferPool reuses ReverseProxy's copy buffers, which otherwise cost 32 KiB
// of garbage per request.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// reverseProxyError is ReverseProxy's ErrorHandler.
func (g *Gateway) reverseProxyError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	g.proxyError(w, r, c, err)
}

// proxyError answers for a request no endpoint answered.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, c *call, err error) {
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
	case errors.Is(err, connlimit.ErrBodyTooSlow):
		kind, msg = v1.ErrRequestTimeout, connlimit.ErrBodyTooSlow.Error()
	case errors.As(err, new(*bodyReadError)) && r.Context().Err() == nil:
		// The client's body broke off while it was forwarded: its fault,
		// not the endpoint's.
		var be *bodyReadError
		errors.As(err, &be)
		kind, msg = v1.ErrInvalid, be.Error()
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

// noEndpointsMessage names the route's kind: a function's 503 that said
// "service" once sent a diagnosis to the wrong workload.
func noEndpointsMessage(rt *route) string {
	kind := strings.ToLower(rt.kind)
	if kind == "" {
		kind = "workload"
	}
	return fmt.Sprintf("%s %s in environment %s has no ready endpoints", kind, rt.name, rt.env)
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
	// splitSeq numbers the requests split between revisions (route.choose).
	splitSeq atomic.Uint64

	// freeMu guards free, a channel closed (and replaced) whenever an
	// endpoint of the target frees a slot or the table changes.
	freeMu sync.Mutex
	free   chan struct{}

	// revs measures each revision apart, for the canary judge.
	revs revisionTable

	// The target's metric series, once looked up (metrics.observe).
	seriesMu sync.Mutex
	series   atomic.Pointer[seriesCache]
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
func (g *Gateway) currentRoute(rt *route) *route {
	return g.table.Load().byHost[rt.key]
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
