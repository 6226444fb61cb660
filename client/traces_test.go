package client

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/tracing"
)

func tracesServer(t *testing.T, src apiserver.TraceSource) *Client {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := apiserver.New(apiserver.Config{Store: st, Token: "tok", Traces: src, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return New(Config{Addr: ts.URL, Token: "tok"})
}

// record makes a two-span trace as the gateway would.
func record(tr *tracing.Tracing, workload string, start time.Time, d time.Duration, fail bool) string {
	tracer := tr.TracerProvider().Tracer("test")
	ctx, srv := tracer.Start(context.Background(), "gateway "+workload+".dev", trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String(tracing.AttrWorkload, workload), attribute.String(tracing.AttrEnvironment, "dev")))
	_, cli := tracer.Start(ctx, "upstream "+workload+".dev", trace.WithTimestamp(start.Add(time.Millisecond)))
	if fail {
		cli.SetStatus(codes.Error, "upstream answered 502")
	}
	cli.End(trace.WithTimestamp(start.Add(d - time.Millisecond)))
	srv.End(trace.WithTimestamp(start.Add(d)))
	return srv.SpanContext().TraceID().String()
}

func TestTracesThroughTheAPI(t *testing.T) {
	tr, err := tracing.New(tracing.Config{SampleRatio: 1}) // every trace: the test reads them back
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	c := tracesServer(t, tr)
	ctx := t.Context()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	fast := record(tr, "orders", t0, 20*time.Millisecond, false)
	slow := record(tr, "orders", t0.Add(time.Second), 300*time.Millisecond, true)
	record(tr, "cart", t0.Add(2*time.Second), 50*time.Millisecond, false)

	all, err := c.Traces(ctx, TraceQuery{Workload: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].TraceID != slow || all[1].TraceID != fast {
		t.Fatalf("orders traces %+v; want slow then fast (newest first)", all)
	}
	if s := all[0]; s.Duration != 300*time.Millisecond || s.Spans != 2 || !s.Error || s.Root != "gateway orders.dev" ||
		s.Workload != "orders" || s.Environment != "dev" || !s.Start.Equal(t0.Add(time.Second)) {
		t.Errorf("summary %+v", s)
	}
	for _, q := range []TraceQuery{{MinDuration: 100 * time.Millisecond}, {ErrorsOnly: true}, {Workload: "orders", Limit: 1}} {
		got, err := c.Traces(ctx, q)
		if err != nil || len(got) != 1 || got[0].TraceID != slow {
			t.Errorf("Traces(%+v) = %+v, %v; want only %s", q, got, err, slow)
		}
	}
	if got, err := c.Traces(ctx, TraceQuery{Environment: "prod"}); err != nil || len(got) != 0 {
		t.Errorf("prod traces = %+v, %v; want none", got, err)
	}

	one, err := c.Trace(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Spans) != 2 || one.Spans[1].ParentID != one.Spans[0].SpanID || one.Spans[1].Error != "upstream answered 502" ||
		one.Spans[0].Duration() != 300*time.Millisecond || one.Spans[0].Attributes[tracing.AttrWorkload] != "orders" {
		t.Errorf("trace %+v", one)
	}

	for _, tc := range []struct {
		id   string
		kind string
	}{{"nothex", v1.ErrInvalid}, {"4bf92f3577b34da6a3ce929d0e0e4736", v1.ErrNotFound}} {
		if _, err := c.Trace(ctx, tc.id); v1.KindOf(err) != tc.kind {
			t.Errorf("Trace(%q): %v, want %s", tc.id, err, tc.kind)
		}
	}
	for _, q := range []url.Values{{"minDuration": {"soon"}}, {"limit": {"0"}}, {"errors": {"maybe"}}} {
		var into any
		if err := c.do(ctx, "GET", "/api/v1/traces", q, "", nil, &into); v1.KindOf(err) != v1.ErrInvalid {
			t.Errorf("GET /api/v1/traces?%s: %v, want invalid", q.Encode(), err)
		}
	}
}

func TestTracesWithoutTracing(t *testing.T) {
	c := tracesServer(t, nil)
	if _, err := c.Traces(t.Context(), TraceQuery{}); v1.KindOf(err) != v1.ErrUnavailable {
		t.Errorf("Traces without tracing: %v, want unavailable", err)
	}
}
