package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/telemetry/tracing"
)

const cannedTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// cannedTrace is a call to orders that calls a function at zero, whose
// upstream call fails: two hops, a cold start, an error.
func cannedTrace() v1.Trace {
	t0 := testNow.Add(-2 * time.Minute)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	span := func(id, parent, name, kind string, from, to float64, attrs map[string]string) v1.Span {
		return v1.Span{SpanID: id, ParentID: parent, Name: name, Kind: kind, Start: at(from), End: at(to), Attributes: attrs, Status: "unset"}
	}
	failed := span("e5", "e4", "upstream resize.shop", "client", 220, 239.5, map[string]string{"berth.endpoint.id": "resize-1-x7k2p"})
	failed.Status, failed.Error = "error", "upstream answered 502"
	return v1.Trace{TraceID: cannedTraceID, Spans: []v1.Span{
		span("e1", "", "gateway orders.shop", "server", 0, 250, nil),
		span("e2", "e1", "upstream orders.shop", "client", 0.4, 249.2, map[string]string{"berth.endpoint.id": "orders-3-abcde"}),
		span("e3", "e2", "gateway resize.shop", "server", 10, 240, nil),
		span("e4", "e3", "cold start", "internal", 10.2, 219.8, map[string]string{"berth.cold_start.outcome": "ready"}),
		failed,
	}}
}

// traceSource stands in for the server's trace store behind the real API:
// it holds the canned trace and three summaries, and records the filters
// it is asked.
type traceSource struct {
	mu      sync.Mutex
	filters []tracing.Filter
}

var _ apiserver.TraceSource = (*traceSource)(nil)

func (s *traceSource) Traces(f tracing.Filter) []v1.TraceSummary {
	s.mu.Lock()
	s.filters = append(s.filters, f)
	s.mu.Unlock()
	return []v1.TraceSummary{
		{TraceID: cannedTraceID, Root: "gateway orders.shop", Workload: "orders", Environment: "shop",
			Start: testNow.Add(-2 * time.Minute), Duration: 250 * time.Millisecond, Spans: 5, Error: true},
		{TraceID: "0af7651916cd43dd8448eb211c80319c", Root: "gateway orders.shop", Workload: "orders", Environment: "shop",
			Start: testNow.Add(-3 * time.Minute), Duration: 1234567 * time.Nanosecond, Spans: 2},
		{TraceID: "b7ad6b7169203331b7ad6b7169203331", Root: "gateway", Start: testNow.Add(-90 * time.Minute),
			Duration: 850 * time.Microsecond, Spans: 1},
	}
}

func (s *traceSource) Trace(id string) (v1.Trace, error) {
	if id != cannedTraceID {
		return v1.Trace{}, v1.NotFound("trace %s not found", id)
	}
	return cannedTrace(), nil
}

// tracesAPI is the API with the canned traces; it returns its address and
// the query strings of the trace lists it was asked.
func tracesAPI(t *testing.T) (string, func() []string) {
	f := newTestAPI(t)
	queries := func() []string {
		var out []string
		for _, r := range f.Requests() {
			if path, query, _ := strings.Cut(strings.TrimPrefix(r, "GET "), "?"); path == "/api/v1/traces" {
				out = append(out, query)
			}
		}
		return out
	}
	return f.URL(), queries
}

func runTraces(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return runCtx(context.Background(), t, addr, "", newSyncBuffer(), args...)
}

func TestTracesGolden(t *testing.T) {
	isolateConfig(t)
	addr, queries := tracesAPI(t)
	r := runTraces(t, addr, "traces", "orders", "-e", "shop", "--min-duration", "1ms", "--errors", "--limit", "5")
	mustSucceed(t, r)
	checkGolden(t, "traces", r.stdout)
	if got := queries()[0]; got != "environment=shop&errors=1&limit=5&minDuration=1ms&workload=orders" {
		t.Errorf("query %q", got)
	}
	r = runTraces(t, addr, "traces", "-A")
	mustSucceed(t, r)
	if got := queries()[1]; got != "" {
		t.Errorf("-A sent query %q, want none", got)
	}

	r = runTraces(t, addr, "trace", strings.ToUpper(cannedTraceID))
	mustSucceed(t, r)
	checkGolden(t, "trace_waterfall", r.stdout)

	r = runTraces(t, addr, "trace", cannedTraceID, "-o", "json")
	mustSucceed(t, r)
	var back v1.Trace
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || len(back.Spans) != 5 {
		t.Errorf("-o json: %v\n%s", err, r.stdout)
	}
}

func TestTracesBadInput(t *testing.T) {
	isolateConfig(t)
	addr, _ := tracesAPI(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"trace", "not-a-trace"}, 3, `"not-a-trace" is not a trace id`},
		{[]string{"trace", "00000000000000000000000000000000"}, 3, "is not a trace id"},
		{[]string{"trace", "0af7651916cd43dd8448eb211c80319d"}, 5, "not found"},
		{[]string{"traces", "--min-duration", "fast"}, 3, "--min-duration"},
		{[]string{"traces", "--limit", "-2"}, 3, "--limit"},
		{[]string{"trace"}, 2, "missing the trace id"},
	} {
		r := runTraces(t, addr, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("berth %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.says)
		}
	}
}

func TestSpanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500:                        "500ns",
		850 * time.Microsecond:     "850µs",
		1234567:                    "1.23ms",
		12345678:                   "12.3ms",
		250 * time.Millisecond:     "250ms",
		1250 * time.Millisecond:    "1.25s",
		90*time.Second + 400000000: "1m30s",
		999999 * time.Nanosecond:   "1.00ms",
	} {
		if got := spanDuration(d); got != want {
			t.Errorf("spanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
