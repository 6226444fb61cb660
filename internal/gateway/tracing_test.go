package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/testutil"
)

// newTracing records every trace.
func newTracing(t testing.TB) *tracing.Tracing {
	t.Helper()
	return newTracingWith(t, tracing.Config{SampleRatio: 1})
}

func newTracingWith(t testing.TB, cfg tracing.Config) *tracing.Tracing {
	t.Helper()
	tr, err := tracing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr
}

// waitTrace polls the store until the trace has n spans.
func waitTrace(t *testing.T, tr *tracing.Tracing, id string, n int) v1.Trace {
	t.Helper()
	got := testutil.WaitForValue(t, 10*time.Second, fmt.Sprintf("trace %s with %d spans", id, n), func() (v1.Trace, bool) {
		got, err := tr.Trace(id)
		return got, err == nil && len(got.Spans) >= n
	})
	if len(got.Spans) != n {
		t.Fatalf("trace has %d spans, want %d: %+v", len(got.Spans), n, got.Spans)
	}
	return got
}

func spanNamed(t *testing.T, tc v1.Trace, name string) v1.Span {
	t.Helper()
	var found []v1.Span
	for _, sp := range tc.Spans {
		if sp.Name == name {
			found = append(found, sp)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q in %+v", len(found), name, tc.Spans)
	}
	return found[0]
}

// traceparent splits a W3C traceparent into trace id and parent span id.
func traceparent(t *testing.T, h string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(h, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q is not W3C version 00", h)
	}
	return parts[1], parts[2]
}

// A calls B through the gateway, copying traceparent as an instrumented
// workload does: one trace holds both hops, linked parent to child.
func TestTraceAcrossTwoHops(t *testing.T) {
	tr := newTracing(t)
	var gwURL string
	bSaw := make(chan string, 1)
	b := startUpstream(t, "b", func(w http.ResponseWriter, r *http.Request) {
		bSaw <- r.Header.Get("Traceparent")
		io.WriteString(w, "b here")
	})
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, gwURL+"/", nil)
		req.Host = "b.shop.berth.localhost"
		req.Header.Set("Traceparent", r.Header.Get("Traceparent"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		fmt.Fprintf(w, "a got %q", body)
	})
	tgA := target("shop", "a", a)
	tgA.RoutePath = "/a"
	_, url, c := startGateway(t, Config{TracerProvider: tr.TracerProvider()}, tgA, target("shop", "b", b))
	gwURL = url

	// The caller is itself traced: the gateway continues its trace.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := mustRequest(t, http.MethodGet, url+"/a/x", nil)
	req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	res, body := do(t, c, req)
	if res.StatusCode != 200 || string(body) != `a got "b here"` {
		t.Fatalf("status %d body %q", res.StatusCode, body)
	}
	bTrace, bParent := traceparent(t, <-bSaw)
	if bTrace != callerTrace {
		t.Fatalf("B saw trace %s, want the caller's %s", bTrace, callerTrace)
	}

	tc := waitTrace(t, tr, callerTrace, 4)
	srvA := spanNamed(t, tc, "gateway a.shop")
	cliA := spanNamed(t, tc, "upstream a.shop")
	srvB := spanNamed(t, tc, "gateway b.shop")
	cliB := spanNamed(t, tc, "upstream b.shop")
	for _, link := range []struct {
		child  v1.Span
		parent string
	}{{srvA, callerSpan}, {cliA, srvA.SpanID}, {srvB, cliA.SpanID}, {cliB, srvB.SpanID}} {
		if link.child.ParentID != link.parent {
			t.Errorf("span %q has parent %s, want %s", link.child.Name, link.child.ParentID, link.parent)
		}
	}
	if bParent != cliB.SpanID {
		t.Errorf("B's traceparent names parent %s, want the upstream span %s", bParent, cliB.SpanID)
	}
	if srvA.Kind != "server" || cliA.Kind != "client" {
		t.Errorf("kinds %s, %s; want server, client", srvA.Kind, cliA.Kind)
	}
	for k, want := range map[string]string{
		"http.request.method": "GET", "http.route": "/a", "http.response.status_code": "200",
		tracing.AttrWorkload: "a", tracing.AttrEnvironment: "shop", tracing.AttrKind: "Service",
		tracing.AttrRevision: "1", // the revision that answered: a split is read by it
	} {
		if got := srvA.Attributes[k]; got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{
		tracing.AttrEndpoint: "a", "network.peer.address": a.srv.Listener.Addr().String(),
		tracing.AttrRevision: "1", "http.response.status_code": "200",
	} {
		if got := cliA.Attributes[k]; got != want {
			t.Errorf("upstream span %s = %q, want %q", k, got, want)
		}
	}
	if !(srvA.Start.Compare(cliA.Start) <= 0 && cliA.End.Compare(srvA.End) <= 0) {
		t.Errorf("upstream span [%v, %v] not within server span [%v, %v]", cliA.Start, cliA.End, srvA.Start, srvA.End)
	}

	sums := tr.Traces(tracing.Filter{Name: "b"})
	if len(sums) != 1 || sums[0].TraceID != callerTrace || sums[0].Workload != "a" || sums[0].Spans != 4 || sums[0].Error {
		t.Errorf("traces of b = %+v; want the one trace, rooted at a, 4 spans, no error", sums)
	}
}

// Without an incoming traceparent the gateway starts a trace, and a failed
// upstream marks it as an error.
func TestTraceStartsAndMarksErrors(t *testing.T) {
	tr := newTracing(t)
	saw := make(chan string, 1)
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		saw <- r.Header.Get("Traceparent")
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	_, url, c := startGateway(t, Config{TracerProvider: tr.TracerProvider()}, target("dev", "web", up))
	res, _ := get(t, c, url+"/", "web.dev.berth.localhost")
	if res.StatusCode != 500 {
		t.Fatalf("status %d", res.StatusCode)
	}
	id, _ := traceparent(t, <-saw)
	tc := waitTrace(t, tr, id, 2)
	srv := spanNamed(t, tc, "gateway web.dev")
	if srv.ParentID != "" || srv.Status != "error" || srv.Attributes["http.response.status_code"] != "500" {
		t.Errorf("server span %+v: want a root span with status error and code 500", srv)
	}
	if got := tr.Traces(tracing.Filter{ErrorsOnly: true}); len(got) != 1 || got[0].TraceID != id {
		t.Errorf("errors-only traces = %+v, want %s", got, id)
	}

	// A request that matched no target is traced too, as plain "gateway".
	res, _ = get(t, c, url+"/", "nothing.dev.berth.localhost")
	if res.StatusCode != 404 {
		t.Fatalf("status %d", res.StatusCode)
	}
	testutil.WaitFor(t, 10*time.Second, "the 404's trace", func() bool {
		for _, s := range tr.Traces(tracing.Filter{}) {
			if s.Root == "gateway" {
				return true
			}
		}
		return false
	})
}

// Tracing off: the gateway passes the caller's traceparent through as it
// is, and adds none.
func TestNoTracingPassesTraceparentThrough(t *testing.T) {
	up := startUpstream(t, "u", nil)
	_, url, c := startGateway(t, Config{}, target("dev", "web", up))
	res, body := get(t, c, url+"/", "web.dev.berth.localhost")
	if e := decodeEcho(t, res, body); e.Header.Get("Traceparent") != "" {
		t.Errorf("traceparent %q added with tracing off", e.Header.Get("Traceparent"))
	}
	req := mustRequest(t, http.MethodGet, url+"/", nil)
	req.Host = "web.dev.berth.localhost"
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Header.Set("Traceparent", tp)
	res, body = do(t, c, req)
	if e := decodeEcho(t, res, body); e.Header.Get("Traceparent") != tp {
		t.Errorf("traceparent %q, want the caller's %q", e.Header.Get("Traceparent"), tp)
	}
}

// BenchmarkTracing is the gateway's throughput with tracing off and on
// (every request sampled into the store), side by side:
//
//	go test ./internal/gateway -run '^$' -bench Tracing -benchtime 20000x -count 3
func BenchmarkTracing(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
			defer up.Close()
			cfg := Config{}
			if mode == "on" {
				cfg.TracerProvider = newTracing(b).TracerProvider()
			}
			g := New(cfg)
			defer g.CloseIdleConnections()
			g.SetTargets([]Target{{Environment: "bench", Name: "echo", Endpoints: []Endpoint{{ID: "e", Address: up.Listener.Addr().String()}}}})
			srv := httptest.NewServer(g)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := hostClient(&http.Client{Transport: tr}, "echo.bench.berth.localhost")
			b.SetParallelism(8)
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := c.Get(srv.URL + "/")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// With the sampling ratio near zero, a request that succeeds is not
// recorded, but one that fails is, and so is one that waited for a cold
// start, with the activator's wait and the upstream under it.
//
// Either the provider's sampler decides for each request, or the gateway
// decides itself (Config.SampleRatio); both behave the same.
func TestUnsampledErrorsAndColdStartsAreTraced(t *testing.T) {
	for _, mode := range []string{"provider decides", "gateway decides"} {
		t.Run(mode, func(t *testing.T) { testUnsampled(t, mode == "gateway decides") })
	}
}

func testUnsampled(t *testing.T, gatewayDecides bool) {
	tr := newTracingWith(t, tracing.Config{SampleRatio: 1e-9})
	sawTP := make(chan string, 100)
	ok := startUpstream(t, "ok", func(w http.ResponseWriter, r *http.Request) {
		sawTP <- r.Header.Get("Traceparent")
		io.WriteString(w, `{}`)
	})
	failing := startUpstream(t, "failing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	fn := startUpstream(t, "fn-1", nil)
	var g *Gateway
	cfg := Config{TracerProvider: tr.TracerProvider(), Activator: activatorFunc(func(ctx context.Context, env, name string) error {
		// As the activator does: its wait is a span under the request's.
		_, sp := tr.TracerProvider().Tracer("test").Start(ctx, "cold start")
		g.SetTargets([]Target{target("dev", "ok", ok), target("dev", "failing", failing), target("dev", "fn", fn)})
		sp.End()
		return nil
	})}
	if gatewayDecides {
		cfg.SampleRatio = 1e-9
	}
	g, url, c := startGateway(t, cfg, target("dev", "ok", ok), target("dev", "failing", failing), target("dev", "fn"))

	for range 20 {
		res, _ := get(t, c, url+"/", "ok.dev.berth.localhost")
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		// The skipped request still passes a trace context on, marked
		// not sampled, so the workload's own calls agree.
		if tp := <-sawTP; !strings.HasSuffix(tp, "-00") {
			t.Fatalf("traceparent %q of a skipped request, want one marked not sampled", tp)
		}
	}
	// A caller's decision not to sample is followed, in its trace.
	const callerTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	req := mustRequest(t, http.MethodGet, url+"/", nil)
	req.Host = "ok.dev.berth.localhost"
	req.Header.Set("Traceparent", callerTP)
	do(t, c, req)
	if tp := <-sawTP; !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(tp, "-00") || tp == callerTP {
		t.Errorf("traceparent %q passed on for an unsampled caller, want its trace, a span of the gateway's, not sampled", tp)
	}
	res, _ := get(t, c, url+"/", "failing.dev.berth.localhost")
	if res.StatusCode != 500 {
		t.Fatalf("status %d", res.StatusCode)
	}
	res, body := get(t, c, url+"/", "fn.dev.berth.localhost")
	decodeEcho(t, res, body)

	var failed, cold v1.TraceSummary
	testutil.WaitFor(t, 10*time.Second, "the error's and the cold start's traces", func() bool {
		for _, s := range tr.Traces(tracing.Filter{}) {
			switch s.Root {
			case "gateway failing.dev":
				failed = s
			case "gateway fn.dev":
				cold = s
			}
		}
		return failed.TraceID != "" && cold.TraceID != ""
	})
	if n := len(tr.Traces(tracing.Filter{Name: "ok"})); n != 0 {
		t.Errorf("%d of 20 successful requests traced at a ratio of 1e-9", n)
	}
	tc := waitTrace(t, tr, failed.TraceID, 1)
	if sp := spanNamed(t, tc, "gateway failing.dev"); sp.Status != "error" || sp.Attributes[tracing.AttrKeep] != "error" {
		t.Errorf("failed request's span %+v: want status error, kept for the error", sp)
	}
	tc = waitTrace(t, tr, cold.TraceID, 3)
	srv := spanNamed(t, tc, "gateway fn.dev")
	if srv.Attributes[tracing.AttrKeep] != "cold_start" {
		t.Errorf("cold start's span %+v: want it kept for the cold start", srv)
	}
	if wait := spanNamed(t, tc, "cold start"); wait.ParentID != srv.SpanID {
		t.Errorf("the activator's span is not under the request's: %+v", wait)
	}
	if up := spanNamed(t, tc, "upstream fn.dev"); up.ParentID != srv.SpanID {
		t.Errorf("the upstream span is not under the request's: %+v", up)
	}
}

// TestServerSpanRevision: the server span names the revision of the
// instance that answered, so a trace of a split or a canary says which
// one it was; a request no instance answered (503 at zero) names none.
func TestServerSpanRevision(t *testing.T) {
	tr := newTracing(t)
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	ep := up.endpoint()
	ep.Revision = 7
	_, url, c := startGateway(t, Config{TracerProvider: tr.TracerProvider()},
		Target{Environment: "dev", Name: "web", Kind: "Service", Endpoints: []Endpoint{ep}},
		Target{Environment: "dev", Name: "resize", Kind: "Function"})
	for _, tc := range []struct {
		host, trace, want string
		spans             int
	}{
		{"web.dev.berth.localhost", "4bf92f3577b34da6a3ce929d0e0e4701", "7", 2},
		{"resize.dev.berth.localhost", "4bf92f3577b34da6a3ce929d0e0e4702", "", 1},
	} {
		host, want := tc.host, tc.want
		req := mustRequest(t, http.MethodGet, url+"/", nil)
		req.Host = host
		req.Header.Set("Traceparent", "00-"+tc.trace+"-00f067aa0ba902b7-01")
		res, _ := do(t, c, req)
		srv := spanNamed(t, waitTrace(t, tr, tc.trace, tc.spans), "gateway "+strings.TrimSuffix(host, ".berth.localhost"))
		if got, ok := srv.Attributes[tracing.AttrRevision]; got != want || ok != (want != "") {
			t.Errorf("%s (status %d): server span %s = %q (set %v), want %q", host, res.StatusCode, tracing.AttrRevision, got, ok, want)
		}
	}
}
