package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/testutil"
)

// upstream is a real HTTP server on loopback that says who it is and
// counts what it served.
type upstream struct {
	id   string
	srv  *httptest.Server
	hits atomic.Int64
}

func (u *upstream) endpoint() Endpoint {
	return Endpoint{ID: u.id, Address: u.srv.Listener.Addr().String(), Revision: 1}
}

// echo answers with the upstream id and what it received.
type echo struct {
	Upstream string
	Method   string
	Path     string
	RawQuery string
	Host     string
	Header   http.Header
	Body     string
}

func startUpstream(t *testing.T, id string, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{id: id}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(echo{
				Upstream: id, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
				Host: r.Host, Header: r.Header, Body: string(body),
			})
		}
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("X-Upstream", id)
		h(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startGateway serves a Gateway on loopback; the returned client keeps
// connections alive like a browser would.
func startGateway(t *testing.T, cfg Config, ts ...Target) (*Gateway, string, *http.Client) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	g := New(cfg)
	g.SetTargets(ts)
	// Served as the berth server serves it (Server).
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(g, connlimit.DefaultTimeouts, cfg.Logger)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Cleanup(g.CloseIdleConnections)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return g, "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url, host string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return res, body
}

func decodeEcho(t *testing.T, res *http.Response, body []byte) echo {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", res.StatusCode, body)
	}
	var e echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return e
}

func decodeError(t *testing.T, res *http.Response, body []byte, wantStatus int, wantKind string) v1.ErrorBody {
	t.Helper()
	if res.StatusCode != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", res.StatusCode, wantStatus, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var s v1.Status
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("error body %q is not the API error shape: %v", body, err)
	}
	if s.Error.Kind != wantKind {
		t.Errorf("kind = %q, want %q (message %q)", s.Error.Kind, wantKind, s.Error.Message)
	}
	return s.Error
}

func target(env, name string, us ...*upstream) Target {
	tg := Target{Environment: env, Name: name, Kind: "Service"}
	for _, u := range us {
		tg.Endpoints = append(tg.Endpoints, u.endpoint())
	}
	return tg
}

func TestHostRouting(t *testing.T) {
	devAPI := startUpstream(t, "dev-api", nil)
	prodAPI := startUpstream(t, "prod-api", nil)
	devWeb := startUpstream(t, "dev-web", nil)
	_, url, c := startGateway(t, Config{},
		target("dev", "api", devAPI), target("prod", "api", prodAPI), target("dev", "web", devWeb))

	for host, want := range map[string]string{
		"api.dev.berth.localhost":       "dev-api",
		"API.Dev.Berth.Localhost:8080":  "dev-api",
		"api.prod.berth.localhost:1234": "prod-api",
		"web.dev.berth.localhost.":      "dev-web",
	} {
		req, _ := http.NewRequest(http.MethodGet, url+"/some/path?q=1", nil)
		req.Host = host
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		// A hop-by-hop header named in Connection must not reach the workload.
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "secret")
		res, body := do(t, c, req)
		e := decodeEcho(t, res, body)
		if e.Upstream != want {
			t.Errorf("host %s went to %s, want %s", host, e.Upstream, want)
		}
		if e.Path != "/some/path" || e.RawQuery != "q=1" {
			t.Errorf("host %s: upstream saw %s?%s, want /some/path?q=1", host, e.Path, e.RawQuery)
		}
		if e.Host != host {
			t.Errorf("upstream saw Host %q, want the client's %q", e.Host, host)
		}
		if got := e.Header.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the client's chain plus 127.0.0.1", got)
		}
		if got := e.Header.Get("X-Forwarded-Host"); got != host {
			t.Errorf("X-Forwarded-Host = %q, want %q", got, host)
		}
		if got := e.Header.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto = %q", got)
		}
		if got := e.Header.Get("Via"); got != "1.1 berth" {
			t.Errorf("request Via = %q", got)
		}
		if got := e.Header.Get("X-Hop"); got != "" {
			t.Errorf("hop-by-hop header X-Hop reached the upstream: %q", got)
		}
		if got := res.Header.Get("Via"); got != "1.1 berth" {
			t.Errorf("response Via = %q", got)
		}
	}
}

func TestPathRouting(t *testing.T) {
	api := startUpstream(t, "api", nil)
	v2 := startUpstream(t, "v2", nil)
	site := startUpstream(t, "site", nil)
	apiT := target("dev", "api", api)
	apiT.RoutePath, apiT.StripPrefix = "/api/", true
	v2T := target("dev", "v2", v2)
	v2T.RoutePath = "/api/v2"
	siteT := target("prod", "site", site)
	siteT.RoutePath = "/"
	_, url, c := startGateway(t, Config{}, apiT, v2T, siteT)

	for _, tc := range []struct{ path, upstream, seen string }{
		{"/api", "api", "/"},
		{"/api/", "api", "/"},
		{"/api/orders/7?x=1", "api", "/orders/7"},
		{"/api/v2/things", "v2", "/api/v2/things"},
		{"/api/v2", "v2", "/api/v2"},
		{"/api/v20", "api", "/v20"},
		{"/api2", "site", "/api2"},
		{"/", "site", "/"},
		{"/index.html", "site", "/index.html"},
	} {
		res, body := get(t, c, url+tc.path, "localhost:8080")
		e := decodeEcho(t, res, body)
		if e.Upstream != tc.upstream || e.Path != tc.seen {
			t.Errorf("%s: went to %s as %s, want %s as %s", tc.path, e.Upstream, e.Path, tc.upstream, tc.seen)
		}
	}
}

func TestNotFound(t *testing.T) {
	api := startUpstream(t, "api", nil)
	apiT := target("dev", "api", api)
	apiT.RoutePath = "/api"
	g, url, c := startGateway(t, Config{}, apiT)

	res, body := get(t, c, url+"/", "orders.dev.berth.localhost")
	want := `{"error":{"kind":"NotFound","message":"no service orders in environment dev"}}`
	if res.StatusCode != http.StatusNotFound || strings.TrimSpace(string(body)) != want {
		t.Errorf("unknown host: %d %s, want 404 %s", res.StatusCode, body, want)
	}
	res, body = get(t, c, url+"/api2", "localhost")
	decodeError(t, res, body, http.StatusNotFound, v1.ErrNotFound)

	st := g.Stats()
	if len(st) == 0 || st[0].Environment != "" || st[0].Status[404] != 2 {
		t.Errorf("stats of unrouted requests = %+v, want two 404s", st)
	}
}

func TestNoEndpoints(t *testing.T) {
	_, url, c := startGateway(t, Config{}, target("dev", "idle"))
	res, body := get(t, c, url+"/", "idle.dev.berth.localhost")
	eb := decodeError(t, res, body, http.StatusServiceUnavailable, v1.ErrUnavailable)
	if res.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", res.Header.Get("Retry-After"))
	}
	if !strings.Contains(eb.Message, "idle") || !strings.Contains(eb.Message, "dev") {
		t.Errorf("message %q does not name the service", eb.Message)
	}
}

// activatorFunc lets a test stand in for scale from zero.
type activatorFunc func(ctx context.Context, env, name string) error

func (f activatorFunc) Activate(ctx context.Context, env, name string) error {
	return f(ctx, env, name)
}

func TestActivatorSeam(t *testing.T) {
	fn := startUpstream(t, "fn-1", nil)
	var g *Gateway
	var calls atomic.Int64
	cfg := Config{Activator: activatorFunc(func(ctx context.Context, env, name string) error {
		calls.Add(1)
		if name == "broken" {
			return v1.Unavailable("image pull failed")
		}
		g.SetTargets([]Target{target("dev", "fn", fn), target("dev", "broken")})
		return nil
	})}
	g, url, c := startGateway(t, cfg, target("dev", "fn"), target("dev", "broken"))

	res, body := get(t, c, url+"/", "fn.dev.berth.localhost")
	e := decodeEcho(t, res, body)
	if e.Upstream != "fn-1" {
		t.Errorf("activated request went to %s", e.Upstream)
	}
	res, body = get(t, c, url+"/", "broken.dev.berth.localhost")
	eb := decodeError(t, res, body, http.StatusServiceUnavailable, v1.ErrUnavailable)
	if !strings.Contains(eb.Message, "image pull failed") {
		t.Errorf("message %q does not carry the activator's reason", eb.Message)
	}
	if calls.Load() != 2 {
		t.Errorf("activator called %d times, want 2", calls.Load())
	}
}

// TestActivationErrorsAnswerTheirKindsStatus: what the activator says
// becomes the status of its kind (v1.HTTPStatus), the API's table.
func TestActivationErrorsAnswerTheirKindsStatus(t *testing.T) {
	for _, c := range []struct {
		err        error
		status     int
		kind       string
		retryAfter string
	}{
		{v1.Errorf(v1.ErrTooManyRequests, "1000 requests already waiting for a cold start"), http.StatusTooManyRequests, v1.ErrTooManyRequests, "1"},
		{v1.Errorf(v1.ErrBadGateway, "instance fn-1 exited with code 1"), http.StatusBadGateway, v1.ErrBadGateway, ""},
		{v1.Unavailable("no instance became ready within 30s"), http.StatusServiceUnavailable, v1.ErrUnavailable, "1"},
		{fmt.Errorf("something without a kind"), http.StatusServiceUnavailable, v1.ErrUnavailable, "1"},
	} {
		cfg := Config{Activator: activatorFunc(func(ctx context.Context, env, name string) error { return c.err })}
		g, url, cl := startGateway(t, cfg, Target{Environment: "dev", Name: "fn", Kind: "Function"})
		res, body := get(t, cl, url+"/", "fn.dev.berth.localhost")
		eb := decodeError(t, res, body, c.status, c.kind)
		if got := res.Header.Get("Retry-After"); got != c.retryAfter {
			t.Errorf("%v: Retry-After = %q, want %q", c.err, got, c.retryAfter)
		}
		if !strings.Contains(eb.Message, c.err.Error()) || !strings.Contains(eb.Message, "function fn in environment dev") {
			t.Errorf("%v: message %q does not say which function and why", c.err, eb.Message)
		}
		if st := statsOf(g, "dev", "fn"); st.Status[c.status] != 1 {
			t.Errorf("%v: stats %v, want one %d", c.err, st.Status, c.status)
		}
	}
}

func TestBalancingSpreadsLoad(t *testing.T) {
	us := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	_, url, c := startGateway(t, Config{}, target("dev", "api", us...))
	hc := hostClient(c, "api.dev.berth.localhost")

	const n = 300
	runConcurrently(t, 6, n, func() error {
		res, err := hc.Get(url + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
	for _, u := range us {
		// A fair share is 100; power of two choices keeps it well within this.
		if h := u.hits.Load(); h < 60 || h > 140 {
			t.Errorf("upstream %s got %d of %d requests, want about %d", u.id, h, n, n/3)
		}
	}
}

func TestLeastOutstandingAvoidsSlowUpstream(t *testing.T) {
	slow := startUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // the upstream's own latency, not a wait in the test
		io.WriteString(w, "slow")
	})
	fast1 := startUpstream(t, "fast1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })
	fast2 := startUpstream(t, "fast2", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })
	_, url, c := startGateway(t, Config{}, target("dev", "api", slow, fast1, fast2))
	hc := hostClient(c, "api.dev.berth.localhost")

	const n = 600
	runConcurrently(t, 6, n, func() error {
		res, err := hc.Get(url + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return nil
	})
	t.Logf("slow %d fast %d %d", slow.hits.Load(), fast1.hits.Load(), fast2.hits.Load())
	// Round robin would send it 200; least outstanding sends it a few.
	if h := slow.hits.Load(); h > n/10 {
		t.Errorf("slow upstream got %d of %d requests (fast: %d, %d), want under %d",
			h, n, fast1.hits.Load(), fast2.hits.Load(), n/10)
	}
}

// runConcurrently calls f n times from workers goroutines, failing the test
// on any error.
func runConcurrently(t *testing.T, workers, n int, f func() error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := f(); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var failed int
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed; first: %v", failed, n, first)
	}
}

// hostClient returns a client that sends every request with Host host.
func hostClient(c *http.Client, host string) *http.Client {
	return &http.Client{Timeout: c.Timeout, Transport: hostRoundTripper{c.Transport, host}}
}

type hostRoundTripper struct {
	rt   http.RoundTripper
	host string
}

func (h hostRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = h.host
	return h.rt.RoundTrip(r)
}

func TestDrain(t *testing.T) {
	release := make(chan struct{})
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "a")
	})
	b := startUpstream(t, "b", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	g, url, c := startGateway(t, Config{}, target("dev", "api", a))
	hc := hostClient(c, "api.dev.berth.localhost")

	slowDone := make(chan error, 1)
	go func() {
		res, err := hc.Get(url + "/slow")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || string(body) != "a" {
				err = fmt.Errorf("slow request: %d %s", res.StatusCode, body)
			}
		}
		slowDone <- err
	}()
	// In flight in the gateway and arrived at a (counted among a's hits).
	testutil.WaitFor(t, 10*time.Second, "the slow request to be in flight on a", func() bool { return g.InFlight("a") == 1 && a.hits.Load() == 1 })

	// The rollout brings b up, then drains a.
	g.SetTargets([]Target{target("dev", "api", a, b)})
	drained := make(chan error, 1)
	go func() { drained <- g.Drain(t.Context(), "a") }()

	hitsA := a.hits.Load()
	for range 50 {
		res, body := get(t, hc, url+"/", "")
		if res.StatusCode != http.StatusOK || string(body) != "b" {
			t.Fatalf("request during drain: %d %q, want 200 from b", res.StatusCode, body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a request was still in flight", err)
	default:
	}

	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if g.InFlight("a") != 0 {
		t.Errorf("InFlight(a) = %d after drain", g.InFlight("a"))
	}

	// A table that still lists a (the platform has not caught up) keeps it out.
	g.SetTargets([]Target{target("dev", "api", a, b)})
	for range 30 {
		if _, body := get(t, hc, url+"/", ""); string(body) != "b" {
			t.Fatalf("drained endpoint served a request after SetTargets still listed it")
		}
	}
	if got := a.hits.Load(); got != hitsA {
		t.Errorf("drained endpoint got %d new requests", got-hitsA)
	}

	// Once gone from the table, a listing of the same ID is a fresh endpoint.
	g.SetTargets([]Target{target("dev", "api", b)})
	g.SetTargets([]Target{target("dev", "api", a)})
	if _, body := get(t, hc, url+"/", ""); string(body) != "a" {
		t.Errorf("re-listed endpoint a is still drained: got %q", body)
	}

	// Drain with a deadline that passes reports what is still in flight.
	release2 := make(chan struct{})
	c2 := startUpstream(t, "c", func(w http.ResponseWriter, r *http.Request) { <-release2 })
	g.SetTargets([]Target{target("dev", "api", c2)})
	go hc.Get(url + "/")
	testutil.WaitFor(t, 10*time.Second, "a request in flight on c", func() bool { return g.InFlight("c") == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := g.Drain(ctx, "c"); v1.KindOf(err) != v1.ErrUnavailable {
		t.Errorf("Drain past its deadline = %v, want Unavailable", err)
	}
	close(release2)
	testutil.WaitFor(t, 10*time.Second, "c to be idle", func() bool { return g.InFlight("c") == 0 })

	if err := g.Drain(t.Context(), "never-heard-of"); err != nil {
		t.Errorf("Drain of an unknown endpoint = %v, want nil", err)
	}
}

// deadAddress returns a loopback address where nothing listens any more.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRetryOnClosedUpstream(t *testing.T) {
	a := startUpstream(t, "a", nil)
	b := startUpstream(t, "b", nil)
	dead := Endpoint{ID: "dead", Address: deadAddress(t)}
	tg := target("dev", "api", a, b)
	tg.Endpoints = append(tg.Endpoints, dead)
	g, url, c := startGateway(t, Config{}, tg, Target{Environment: "dev", Name: "gone", Endpoints: []Endpoint{{ID: "dead2", Address: dead.Address}}})
	hc := hostClient(c, "api.dev.berth.localhost")

	runConcurrently(t, 4, 200, func() error {
		res, err := hc.Get(url + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
	// A small POST body is buffered, so it is replayed too.
	for range 20 {
		res, body := do(t, hc, mustRequest(t, http.MethodPost, url+"/orders", strings.NewReader(`{"n":1}`)))
		if e := decodeEcho(t, res, body); e.Body != `{"n":1}` {
			t.Fatalf("replayed POST body = %q", e.Body)
		}
	}

	res, body := get(t, c, url+"/", "gone.dev.berth.localhost")
	eb := decodeError(t, res, body, http.StatusBadGateway, v1.ErrBadGateway)
	if !strings.Contains(eb.Message, "dead2") || !strings.Contains(eb.Message, "connection refused") {
		t.Errorf("502 message %q does not say which endpoint failed and why", eb.Message)
	}
	if st := statsOf(g, "dev", "api"); st.Status[200] != 220 || st.Requests != 220 {
		t.Errorf("stats for dev/api = %+v, want 220 × 200", st)
	}
}

func statsOf(g *Gateway, env, name string) TargetStats {
	for _, s := range g.Stats() {
		if s.Environment == env && s.Name == name {
			return s
		}
	}
	return TargetStats{}
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// An upstream shutting down under load (what a rollout does to the old
// instance) costs no GET: pooled connections it closes are retried by the
// transport, and refused dials on another endpoint.
func TestUpstreamShutdownUnderLoad(t *testing.T) {
	us := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	_, url, c := startGateway(t, Config{}, target("dev", "api", us...))
	hc := hostClient(c, "api.dev.berth.localhost")

	var done atomic.Int64
	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		for done.Load() < 100 {
			time.Sleep(time.Millisecond)
		}
		us[0].srv.Config.Shutdown(context.Background())
	}()
	runConcurrently(t, 6, 600, func() error {
		defer done.Add(1)
		res, err := hc.Get(url + "/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", res.StatusCode, body)
		}
		return nil
	})
	<-shutdown
}

func TestBodyCap(t *testing.T) {
	u := startUpstream(t, "a", nil)
	_, url, c := startGateway(t, Config{MaxBodyBytes: 100 << 10}, target("dev", "api", u))
	hc := hostClient(c, "api.dev.berth.localhost")

	// Declared too large: refused before anything is read.
	res, body := do(t, hc, mustRequest(t, http.MethodPost, url+"/", bytes.NewReader(make([]byte, 200<<10))))
	decodeError(t, res, body, http.StatusRequestEntityTooLarge, v1.ErrTooLarge)

	// Chunked (length unknown), caught while streaming to the upstream.
	req := mustRequest(t, http.MethodPost, url+"/", io.MultiReader(bytes.NewReader(make([]byte, 200<<10))))
	req.ContentLength = -1
	res, body = do(t, hc, req)
	decodeError(t, res, body, http.StatusRequestEntityTooLarge, v1.ErrTooLarge)

	// Under the cap, both ways, arrives whole.
	for _, n := range []int{10, 70 << 10, 100 << 10} {
		req := mustRequest(t, http.MethodPut, url+"/", io.MultiReader(strings.NewReader(strings.Repeat("x", n))))
		req.ContentLength = -1
		res, body := do(t, hc, req)
		if e := decodeEcho(t, res, body); len(e.Body) != n {
			t.Errorf("chunked body of %d bytes arrived as %d", n, len(e.Body))
		}
	}
}

func TestUpstreamTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	stuck := startUpstream(t, "stuck", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	// Headers in time, then a body slower than the timeout: a stream, which
	// must not be cut, and must reach the client as it is written.
	next := make(chan struct{})
	stream := startUpstream(t, "stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next
		time.Sleep(timeout + timeout/2) // outlast the header timeout
		io.WriteString(w, "data: two\n\n")
	})
	_, url, c := startGateway(t, Config{Timeout: timeout}, target("dev", "stuck", stuck), target("dev", "stream", stream))

	start := time.Now()
	res, body := get(t, c, url+"/", "stuck.dev.berth.localhost")
	eb := decodeError(t, res, body, http.StatusGatewayTimeout, v1.ErrGatewayTimeout)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("504 took %s", took)
	}
	if !strings.Contains(eb.Message, "stuck") {
		t.Errorf("504 message %q does not name the endpoint", eb.Message)
	}

	req := mustRequest(t, http.MethodGet, url+"/", nil)
	req.Host = "stream.dev.berth.localhost"
	sres, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sres.Body.Close()
	br := bufio.NewReader(sres.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
		t.Fatalf("first event not flushed through: %q %v", line, err)
	}
	close(next)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Errorf("stream cut or broken: %q %v", rest, err)
	}
}

func TestSetTargetsUnderTraffic(t *testing.T) {
	us := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	g, url, c := startGateway(t, Config{}, target("dev", "api", us...))
	hc := hostClient(c, "api.dev.berth.localhost")

	stop := make(chan struct{})
	tick := make(chan struct{}, 1)
	flipped := make(chan int)
	go func() {
		n := 0
		defer func() { flipped <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			case <-tick:
			}
			// Every table keeps at least one live endpoint, as a rollout does.
			g.SetTargets([]Target{target("dev", "api", us[n%3], us[(n+1)%3]), target("dev", "other", us[n%3])})
			g.Stats()
		}
	}()
	runConcurrently(t, 6, 600, func() error {
		// Change the table about as often as requests are made.
		select {
		case tick <- struct{}{}:
		default:
		}
		res, err := hc.Get(url + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
	close(stop)
	if n := <-flipped; n == 0 {
		t.Error("the table never changed during the traffic")
	}
	for _, u := range us {
		testutil.WaitFor(t, 10*time.Second, "in-flight counts to settle", func() bool { return g.InFlight(u.id) == 0 })
	}
}

func TestUpgradePassesThrough(t *testing.T) {
	u := startUpstream(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})
	g, url, _ := startGateway(t, Config{}, target("dev", "ws", u))

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /socket HTTP/1.1\r\nHost: ws.dev.berth.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo over the upgraded connection: %q %v", line, err)
	}
	if g.InFlight("ws") != 1 {
		t.Errorf("an open upgraded connection counts as in flight: InFlight = %d", g.InFlight("ws"))
	}
	conn.Close()
	testutil.WaitFor(t, 10*time.Second, "the closed connection to leave the in-flight count", func() bool { return g.InFlight("ws") == 0 })
}

func TestMatchPath(t *testing.T) {
	for _, tc := range []struct {
		prefix, path string
		want         bool
	}{
		{"/api", "/api", true},
		{"/api", "/api/", true},
		{"/api", "/api/x", true},
		{"/api", "/api2", false},
		{"/api", "/ap", false},
		{"/", "/anything", true},
	} {
		if got := matchPath(tc.prefix, tc.path); got != tc.want {
			t.Errorf("matchPath(%q, %q) = %v", tc.prefix, tc.path, got)
		}
	}
	if got := normalisePath("api/"); got != "/api" {
		t.Errorf("normalisePath(api/) = %q", got)
	}
}

func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer up.Close()
	g := New(Config{})
	g.SetTargets([]Target{{Environment: "bench", Name: "echo", Endpoints: []Endpoint{{ID: "e", Address: up.Listener.Addr().String()}}}})
	srv := httptest.NewServer(g)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := hostClient(&http.Client{Transport: tr}, "echo.bench.berth.localhost")
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(srv.URL + "/")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing, so that
// BenchmarkServeHTTP counts the gateway's own work.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// BenchmarkServeHTTP is the gateway's own cost per request, its
// allocations included, with a real upstream on loopback and no client or
// server around it (3 of the allocations are the benchmark's request):
//
//	go test ./internal/gateway -run '^$' -bench ServeHTTP -benchmem
func BenchmarkServeHTTP(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer up.Close()
	for _, mode := range []string{"plain", "traced-default", "traced-all"} {
		b.Run(mode, func(b *testing.B) {
			cfg := Config{}
			switch mode {
			case "traced-default":
				cfg.TracerProvider = newTracingWith(b, tracing.Config{}).TracerProvider()
			case "traced-all":
				cfg.TracerProvider = newTracing(b).TracerProvider()
			}
			g := New(cfg)
			defer g.CloseIdleConnections()
			g.SetTargets([]Target{{Environment: "bench", Name: "echo", Endpoints: []Endpoint{{ID: "e", Address: up.Listener.Addr().String()}}}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			u, _ := url.Parse("/")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r := (&http.Request{Method: "GET", URL: u, RequestURI: "/", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Host: "echo.bench.berth.localhost", Header: http.Header{}, RemoteAddr: "127.0.0.1:1234"}).WithContext(ctx)
				clear(w.h)
				g.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}
