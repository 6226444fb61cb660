package tracing

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
)

// newTracing records every trace unless cfg says otherwise.
func newTracing(t *testing.T, cfg Config) *Tracing {
	t.Helper()
	if cfg.SampleRatio == 0 {
		cfg.SampleRatio = 1
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr
}

// request records one request's spans as the gateway would: a server span
// with a client span under it.
func request(tr *Tracing, workload string, d time.Duration, fail bool) trace.TraceID {
	tracer := tr.TracerProvider().Tracer("test")
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx, srv := tracer.Start(context.Background(), "gateway "+workload+".dev", trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String(AttrWorkload, workload), attribute.String(AttrEnvironment, "dev")))
	_, cli := tracer.Start(ctx, "upstream "+workload+".dev", trace.WithTimestamp(start.Add(time.Millisecond)))
	if fail {
		cli.SetStatus(codes.Error, "upstream answered 502")
	}
	cli.End(trace.WithTimestamp(start.Add(d - time.Millisecond)))
	srv.End(trace.WithTimestamp(start.Add(d)))
	return srv.SpanContext().TraceID()
}

func TestStoreKeepsWithinBounds(t *testing.T) {
	tr := newTracing(t, Config{StoreSize: 10})
	var ids []trace.TraceID
	for i := range 50 {
		ids = append(ids, request(tr, "web", time.Duration(i+2)*time.Millisecond, false))
	}
	if traces, spans := tr.Store().Len(); traces != 10 || spans != 20 {
		t.Fatalf("store holds %d traces, %d spans; want the 10 newest, 20 spans", traces, spans)
	}
	if _, err := tr.Trace(ids[39].String()); v1.KindOf(err) != v1.ErrNotFound {
		t.Errorf("evicted trace: err %v, want not found", err)
	}
	if got, err := tr.Trace(ids[49].String()); err != nil || len(got.Spans) != 2 {
		t.Errorf("newest trace: %+v, %v", got, err)
	}

	// One runaway trace takes at most the span bound (10 × 10), and the
	// store still holds it and others within the bound.
	tracer := tr.TracerProvider().Tracer("test")
	ctx, root := tracer.Start(context.Background(), "runaway")
	for range 500 {
		_, sp := tracer.Start(ctx, "child")
		sp.End()
	}
	root.End()
	if traces, spans := tr.Store().Len(); traces > 10 || spans > 100 {
		t.Fatalf("store holds %d traces, %d spans; bounds are 10 and 100", traces, spans)
	}
	request(tr, "web", 5*time.Millisecond, false)
	if traces, spans := tr.Store().Len(); traces > 10 || spans > 100 {
		t.Fatalf("store holds %d traces, %d spans; bounds are 10 and 100", traces, spans)
	}
}

func TestTracesFilter(t *testing.T) {
	tr := newTracing(t, Config{})
	slow := request(tr, "orders", 300*time.Millisecond, false)
	failed := request(tr, "orders", 20*time.Millisecond, true)
	other := request(tr, "cart", 500*time.Millisecond, false)
	ids := func(sums []v1.TraceSummary) []trace.TraceID {
		var out []trace.TraceID
		for _, s := range sums {
			id, _ := trace.TraceIDFromHex(s.TraceID)
			out = append(out, id)
		}
		return out
	}
	for _, tc := range []struct {
		f    Filter
		want []trace.TraceID
	}{
		{Filter{Name: "orders", MinDuration: 100 * time.Millisecond}, []trace.TraceID{slow}},
		{Filter{ErrorsOnly: true}, []trace.TraceID{failed}},
		{Filter{Name: "cart", Environment: "dev"}, []trace.TraceID{other}},
		{Filter{Environment: "prod"}, nil},
		{Filter{Name: "orders", Limit: 1}, nil}, // only the count matters
	} {
		got := ids(tr.Traces(tc.f))
		if tc.f.Limit == 1 {
			if len(got) != 1 {
				t.Errorf("%+v: %d traces, want 1", tc.f, len(got))
			}
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.f, got, tc.want)
		}
	}
	sum := tr.Traces(Filter{Name: "cart"})[0]
	if sum.Root != "gateway cart.dev" || sum.Workload != "cart" || sum.Environment != "dev" ||
		sum.Duration != 500*time.Millisecond || sum.Spans != 2 || sum.Error {
		t.Errorf("summary %+v", sum)
	}
}

func TestTraceIDs(t *testing.T) {
	tr := newTracing(t, Config{})
	for _, bad := range []string{"", "xyz", "4bf92f3577b34da6a3ce929d0e0e473", "00000000000000000000000000000000"} {
		if _, err := tr.Trace(bad); v1.KindOf(err) != v1.ErrInvalid {
			t.Errorf("Trace(%q): %v, want invalid", bad, err)
		}
	}
	if _, err := tr.Trace("4bf92f3577b34da6a3ce929d0e0e4736"); v1.KindOf(err) != v1.ErrNotFound {
		t.Errorf("unknown id: %v, want not found", err)
	}
	id := request(tr, "web", 10*time.Millisecond, true)
	got, err := tr.Trace(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Spans[0].Name != "gateway web.dev" || got.Spans[1].ParentID != got.Spans[0].SpanID ||
		got.Spans[1].Status != "error" || got.Spans[1].Error != "upstream answered 502" {
		t.Errorf("spans %+v", got.Spans)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{SampleRatio: 1.5}, {StoreSize: -1}, {OTLPEndpoint: "ftp://x"}, {OTLPEndpoint: "http://"}} {
		if _, err := New(cfg); v1.KindOf(err) != v1.ErrInvalid {
			t.Errorf("New(%+v): %v, want invalid", cfg, err)
		}
	}
}

// Spans go to an OTLP/HTTP collector when one is configured.
func TestOTLPExport(t *testing.T) {
	var mu sync.Mutex
	var names []string
	var service string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "unexpected "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					service = a.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names = append(names, sp.Name)
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	defer collector.Close()

	// host:port, the way --otlp-endpoint is usually given.
	tr, err := New(Config{OTLPEndpoint: collector.Listener.Addr().String(), ServiceName: "berth-test", SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	request(tr, "web", 10*time.Millisecond, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Shutdown flushes what the batcher holds.
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(names) != "[upstream web.dev gateway web.dev]" || service != "berth-test" {
		t.Errorf("collector got spans %v from service %q", names, service)
	}
}

// With a ratio, most new traces are not recorded, a sampled caller's are,
// and a span started with AttrKeep always is.
func TestSamplingKeepsWhatItMust(t *testing.T) {
	tr := newTracing(t, Config{SampleRatio: 1e-9})
	tracer := tr.TracerProvider().Tracer("test")
	recorded := 0
	for range 100 {
		_, sp := tracer.Start(context.Background(), "new")
		if sp.IsRecording() {
			recorded++
		}
		sp.End()
	}
	if recorded != 0 {
		t.Errorf("%d of 100 new traces recorded at a ratio of 1e-9", recorded)
	}

	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
		TraceFlags: trace.FlagsSampled, Remote: true})
	_, sp := tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sampled), "child of a sampled caller")
	if !sp.IsRecording() {
		t.Error("a sampled caller's trace was not recorded")
	}
	sp.End()

	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), unsampled)
	_, sp = tracer.Start(ctx, "child of an unsampled caller")
	if sp.IsRecording() {
		t.Error("an unsampled caller's trace was recorded")
	}
	_, kept := tracer.Start(ctx, "failed", trace.WithAttributes(attribute.String(AttrKeep, "error")))
	if !kept.IsRecording() || kept.SpanContext().TraceID() != unsampled.TraceID() {
		t.Errorf("a span with %s was not recorded in its caller's trace", AttrKeep)
	}
	kept.End()
	if _, err := tr.Trace(unsampled.TraceID().String()); err != nil {
		t.Errorf("kept span not in the store: %v", err)
	}
}
